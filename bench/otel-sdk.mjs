/**
 * An OpenTelemetry SDK registered the way an application does, whose spans go nowhere: a
 * BasicTracerProvider with a BatchSpanProcessor (default settings) and an exporter that drops what
 * it gets, plus the async-hooks context manager and the W3C propagator. Used by bench/child.mjs
 * (`otel: true`) to measure what tracing costs a worker.
 */
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { ExportResultCode, W3CTraceContextPropagator } from '@opentelemetry/core';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';

export function registerNoopSdk() {
  let exported = 0;
  const exporter = {
    export(spans, done) {
      exported += spans.length;
      done({ code: ExportResultCode.SUCCESS });
    },
    shutdown: () => Promise.resolve(),
  };
  const provider = new BasicTracerProvider({ spanProcessors: [new BatchSpanProcessor(exporter)] });
  trace.setGlobalTracerProvider(provider);
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  return {
    /** Spans the exporter received so far (after a flush). */
    exported: async () => {
      await provider.forceFlush();
      return exported;
    },
  };
}
