import type { Attributes } from '@opentelemetry/api';
import { RetryLaterError } from '../failure/errors.js';
import type { Logger } from '../observability/logger.js';
import type { Outcome, TracedSpan } from '../observability/tracing.js';
import type { WorkItem } from './work-item.js';

/**
 * A job's logger and the span of its current attempt. The logger is made on first use: most jobs
 * never log, and a pino child per job (or a Proxy) is a measurable cost at tens of thousands of
 * jobs per second. When the attempt is traced, its lines carry `trace_id` and `span_id`.
 */
export class JobLog {
  private made: Logger | undefined;

  constructor(
    private readonly base: Logger,
    private readonly item: WorkItem,
    private attempt: number = item.attempt,
    /** The current attempt's span; undefined when the job is not traced. */
    public span: TracedSpan | undefined = undefined,
  ) {}

  get logger(): Logger {
    const { item, span } = this;
    if (this.made) return this.made;
    const bindings: Record<string, unknown> = {
      topic: item.topic,
      partition: item.partition,
      offset: item.offset,
      key: item.key,
      jobId: item.jobId,
      attempt: this.attempt,
    };
    if (span) {
      const { traceId, spanId } = span.span.spanContext();
      bindings.trace_id = traceId;
      bindings.span_id = spanId;
    }
    this.made = this.base.child(bindings);
    return this.made;
  }

  /** A later in-place attempt of the same job: its number and span (the previous one has ended). */
  next(attempt: number, span: TracedSpan | undefined): void {
    this.attempt = attempt;
    this.span = span;
    this.made = undefined;
  }

  /**
   * The attempt failed: the span records the error with status ERROR; a `RetryLaterError` (the
   * handler asked to run again later) is recorded without the ERROR status.
   */
  fail(error: unknown): void {
    this.span?.fail(error, { asError: !(error instanceof RetryLaterError) });
  }

  /** The attempt reached `outcome`: its span ends (once). */
  end(outcome: Outcome, attributes?: Attributes): void {
    this.span?.end(outcome, attributes);
  }
}
