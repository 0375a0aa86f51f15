import { SpanKind } from '@opentelemetry/api';
import { ATTR, activeTracer, recordContext, startSpan, type TracedSpan } from '../observability/tracing.js';
import type { WorkItem } from './work-item.js';

/**
 * Starts one CONSUMER span per attempt (`process <topic>`), a child of the context the record
 * carries: the producer's span, or the attempt that sent it to this tier. Undefined when tracing is
 * off or no SDK is registered, so an untraced job allocates nothing for it.
 */
export class AttemptTracer {
  constructor(
    private readonly enabled: boolean,
    private readonly group: string,
  ) {}

  start(item: WorkItem, attempt: number): TracedSpan | undefined {
    const tracer = this.enabled ? activeTracer() : undefined;
    if (!tracer) return undefined;
    const offset = Number(item.offset);
    return startSpan(tracer, `process ${item.topic}`, {
      kind: SpanKind.CONSUMER,
      parent: recordContext(item.rawHeaders),
      attributes: {
        [ATTR.system]: 'kafka',
        [ATTR.destination]: item.topic,
        [ATTR.partition]: item.partition,
        [ATTR.offset]: Number.isSafeInteger(offset) ? offset : item.offset,
        ...(item.key !== null ? { [ATTR.key]: item.key } : {}),
        [ATTR.messageId]: item.jobId,
        [ATTR.group]: this.group,
        [ATTR.operationType]: 'process',
        [ATTR.attempt]: attempt,
        [ATTR.tier]: item.tier,
      },
    });
  }
}
