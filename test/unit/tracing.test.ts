import { context, propagation, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { afterEach, describe, expect, it } from 'vitest';
import { RetryLaterError } from '../../src/failure/errors.js';
import { createLogger } from '../../src/observability/logger.js';
import { activeTracer, injectContext, recordContext, startSpan } from '../../src/observability/tracing.js';
import { JobLog } from '../../src/worker/job-log.js';
import type { WorkItem } from '../../src/worker/work-item.js';
import { registerTracing } from '../support/otel.js';

let unregister: (() => Promise<void>) | undefined;
afterEach(async () => {
  await unregister?.();
  unregister = undefined;
});

describe('tracing', () => {
  it('sees no SDK until one is registered, and none after it is removed', async () => {
    expect(activeTracer()).toBeUndefined();
    unregister = registerTracing(new InMemorySpanExporter());
    expect(activeTracer()).toBeDefined();
    await unregister();
    unregister = undefined;
    expect(activeTracer()).toBeUndefined();
  });

  it('writes the context into headers, drops a stale tracestate, and keeps it against later injections', () => {
    unregister = registerTracing(new InMemorySpanExporter());
    const tracer = activeTracer()!;
    const ours = tracer.startSpan('ours');
    const headers: Record<string, unknown> = { tracestate: 'old=1', 'strand-job-id': 'j1' };
    injectContext(trace.setSpan(context.active(), ours), headers);
    const { traceId, spanId } = ours.spanContext();
    expect(headers.traceparent).toBe(`00-${traceId}-${spanId}-01`);
    expect(Object.keys(headers).sort()).toEqual(['strand-job-id', 'traceparent']);
    // A client instrumentation injecting its own span into the same message changes nothing.
    const other = tracer.startSpan('kafkajs send');
    propagation.inject(trace.setSpan(context.active(), other), headers);
    expect(headers.traceparent).toBe(`00-${traceId}-${spanId}-01`);
    expect(JSON.parse(JSON.stringify(headers))).toEqual({
      'strand-job-id': 'j1',
      traceparent: `00-${traceId}-${spanId}-01`,
    });
    // And it reads back (Buffers, as kafkajs hands headers over).
    const back = trace.getSpanContext(
      recordContext({ traceparent: Buffer.from(String(headers.traceparent)) }),
    );
    expect(back).toMatchObject({ traceId, spanId, isRemote: true });
  });

  it('without an SDK a record context is empty and nothing is injected', () => {
    const headers: Record<string, unknown> = {};
    injectContext(context.active(), headers);
    expect(headers).toEqual({});
    expect(
      trace.getSpanContext(recordContext({ traceparent: `00-${'a'.repeat(32)}-${'b'.repeat(16)}-01` })),
    ).toBe(undefined);
  });

  it('a failed attempt is status ERROR with the exception; one that asked to run later keeps the exception event and no ERROR', () => {
    const exporter = new InMemorySpanExporter();
    unregister = registerTracing(exporter);
    const attempt = () =>
      startSpan(activeTracer()!, 'process jobs', {
        kind: SpanKind.CONSUMER,
        parent: context.active(),
        attributes: {},
      });
    const item = { topic: 'jobs', partition: 0, offset: '1', key: 'k', attempt: 1 } as unknown as WorkItem;
    const quiet = createLogger({ level: 'silent' });
    const failed = new JobLog(quiet, item, 1, attempt());
    failed.fail(new Error('downstream 500'));
    failed.end('retried');
    const later = new JobLog(quiet, item, 1, attempt());
    later.fail(new RetryLaterError({ delayMs: 5000, message: 'rate limited' }));
    later.end('retried');
    const [first, second] = exporter.getFinishedSpans();
    expect(first?.status).toEqual({ code: SpanStatusCode.ERROR, message: 'downstream 500' });
    expect(first?.events.map((e) => e.name)).toEqual(['exception']);
    expect(second?.status.code).toBe(SpanStatusCode.UNSET);
    expect(second?.events.map((e) => [e.name, e.attributes?.['exception.message']])).toEqual([
      ['exception', 'rate limited'],
    ]);
  });
});
