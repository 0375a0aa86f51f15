import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { type ExportResult, ExportResultCode, W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  BasicTracerProvider,
  type ReadableSpan,
  SimpleSpanProcessor,
  type SpanExporter,
} from '@opentelemetry/sdk-trace-base';

/**
 * Registers an OpenTelemetry SDK the way an application does (tracer provider, async-hooks context
 * manager, W3C propagator), every ended span going to `exporter`. Returns the unregister step.
 */
export function registerTracing(exporter: SpanExporter): () => Promise<void> {
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  trace.setGlobalTracerProvider(provider);
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  return async () => {
    await provider.shutdown();
    trace.disable();
    context.disable();
    propagation.disable();
  };
}

/** An ended span as the tests look at it (and as worker processes write it, one JSON line each). */
export interface SpanLine {
  traceId: string;
  spanId: string;
  parentSpanId: string | undefined;
  name: string;
  /** SpanKind: 3 PRODUCER, 4 CONSUMER. */
  kind: number;
  /** SpanStatusCode: 0 UNSET, 2 ERROR. */
  status: number;
  attributes: Record<string, unknown>;
  /** Names of the span's events ('exception' for a recorded error). */
  events: string[];
  exceptionTypes: string[];
  links: { traceId: string; spanId: string }[];
  /** The instrumentation that made it ('strand', '@opentelemetry/instrumentation-kafkajs', …). */
  scope: string;
  pid: number;
}

export function spanLine(span: ReadableSpan): SpanLine {
  const { traceId, spanId } = span.spanContext();
  return {
    traceId,
    spanId,
    parentSpanId: span.parentSpanContext?.spanId,
    name: span.name,
    kind: span.kind,
    status: span.status.code,
    attributes: { ...span.attributes },
    events: span.events.map((e) => e.name),
    exceptionTypes: span.events.map((e) => String(e.attributes?.['exception.type'] ?? '')).filter(Boolean),
    links: span.links.map((l) => ({ traceId: l.context.traceId, spanId: l.context.spanId })),
    scope: span.instrumentationScope.name,
    pid: process.pid,
  };
}

/** Appends every span to a file as a JSON line (worker processes in multi-process tests). */
export class FileSpanExporter implements SpanExporter {
  constructor(private readonly file: string) {}

  export(spans: ReadableSpan[], done: (result: ExportResult) => void): void {
    appendFileSync(this.file, spans.map((s) => `${JSON.stringify(spanLine(s))}\n`).join(''));
    done({ code: ExportResultCode.SUCCESS });
  }

  shutdown(): Promise<void> {
    return Promise.resolve();
  }
}

export function readSpanFile(file: string): SpanLine[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as SpanLine);
}
