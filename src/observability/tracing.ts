import {
  type Attributes,
  type Context,
  context,
  INVALID_SPAN_CONTEXT,
  type Link,
  ProxyTracerProvider,
  propagation,
  ROOT_CONTEXT,
  type Span,
  type SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type Tracer,
  type TracerProvider,
  trace,
} from '@opentelemetry/api';
import { headerString } from '../headers.js';

/**
 * OpenTelemetry spans through the global tracer provider and propagator (docs/tracing.md). Without
 * a registered SDK `activeTracer()` says so without allocating, and callers skip every span and
 * context on the per-job path.
 */

/** Attribute names (OpenTelemetry messaging conventions, and Strand's own). */
export const ATTR = {
  system: 'messaging.system',
  destination: 'messaging.destination.name',
  partition: 'messaging.kafka.destination.partition',
  partitionId: 'messaging.destination.partition.id',
  offset: 'messaging.kafka.message.offset',
  key: 'messaging.kafka.message.key',
  messageId: 'messaging.message.id',
  group: 'messaging.consumer.group.name',
  operationType: 'messaging.operation.type',
  operationName: 'messaging.operation.name',
  batchCount: 'messaging.batch.message_count',
  attempt: 'strand.attempt',
  tier: 'strand.tier',
  outcome: 'strand.outcome',
  deadReason: 'strand.dead_reason',
  nextTier: 'strand.next_tier',
  replayCount: 'strand.replay_count',
  replayedFrom: 'strand.replayed_from',
} as const;

/** How an attempt ended (`strand.outcome`); `abandoned`: the worker stopped or lost the partition first. */
export type Outcome = 'completed' | 'retried' | 'dead_lettered' | 'duplicate' | 'abandoned';

const NOOP_PROVIDER = new ProxyTracerProvider().getDelegate();
let current: { provider: TracerProvider; tracer: Tracer } | undefined;

/**
 * The tracer of the registered SDK, or undefined when none is registered. Read on every use (an
 * SDK registered after the worker started is picked up) at the cost of a property lookup or two.
 */
export function activeTracer(): Tracer | undefined {
  const global = trace.getTracerProvider() as TracerProvider & { getDelegate?: () => TracerProvider };
  const provider = global.getDelegate ? global.getDelegate() : global;
  if (provider === NOOP_PROVIDER) return undefined;
  if (current?.provider !== provider) current = { provider, tracer: provider.getTracer('strand') };
  return current.tracer;
}

/** `ctx.span` of a job that is not traced (tracing off, or no SDK): one shared non-recording span. */
export const NOOP_SPAN: Span = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

type Carrier = Record<string, unknown>;

const headerGetter: TextMapGetter<Carrier> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => headerString(carrier, key),
};

/** The trace context a record carries (`traceparent`, `tracestate`), on an empty context. */
export function recordContext(headers: Carrier | undefined): Context {
  return headers ? propagation.extract(ROOT_CONTEXT, headers, headerGetter) : ROOT_CONTEXT;
}

/**
 * Writes the context into record headers with the global propagator, replacing the fields it owns
 * (a stale `tracestate` of an earlier hop goes too). The written fields ignore later writes:
 * `@opentelemetry/instrumentation-kafkajs` injects its own send span into every message inside
 * kafkajs' send, parented on whatever context is active when a whole batch goes out (for batched
 * tier/DLQ writes, another job's); the job's own context stays on the wire instead, so its chain
 * of spans holds (docs/tracing.md).
 */
export function injectContext(ctx: Context, headers: Carrier): void {
  const fields: Record<string, string> = {};
  propagation.inject(ctx, fields);
  const names = Object.keys(fields);
  if (names.length === 0) return;
  for (const name of propagation.fields()) delete headers[name];
  for (const name of names) {
    const value = fields[name];
    Object.defineProperty(headers, name, {
      enumerable: true,
      configurable: true,
      get: () => value,
      set: () => undefined,
    });
  }
}

/** A started span with the context it is active in. */
export class TracedSpan {
  private ended = false;
  readonly context: Context;

  constructor(
    readonly span: Span,
    parent: Context,
  ) {
    this.context = trace.setSpan(parent, span);
  }

  /** Runs `fn` with this span active (the handler: its own spans and logs nest under it). */
  run<T>(fn: () => T): T {
    return context.with(this.context, fn);
  }

  /** Writes this span's context into record headers (see `injectContext`). */
  inject(headers: Carrier): void {
    injectContext(this.context, headers);
  }

  /**
   * The attempt failed: the exception is recorded and the status set to ERROR — unless `asError` is
   * false (a handler asking to be retried later did not fail: the exception event stays, the status
   * stays unset).
   */
  fail(error: unknown, opts: { asError?: boolean } = {}): void {
    if (this.ended) return;
    const err = error instanceof Error ? error : new Error(String(error));
    // exception.type is the class (as in `strand-error-class`), not a code a StrandError carries.
    this.span.recordException({
      name: err.name,
      message: err.message,
      ...(err.stack ? { stack: err.stack } : {}),
    });
    if (opts.asError !== false) this.span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
  }

  /** Ends the span once; later calls do nothing. */
  end(outcome?: Outcome, attributes?: Attributes): void {
    if (this.ended) return;
    this.ended = true;
    if (outcome) this.span.setAttribute(ATTR.outcome, outcome);
    if (attributes) this.span.setAttributes(attributes);
    this.span.end();
  }
}

export function startSpan(
  tracer: Tracer,
  name: string,
  opts: { kind: SpanKind; parent: Context; attributes: Attributes; links?: Link[] },
): TracedSpan {
  const span = tracer.startSpan(
    name,
    { kind: opts.kind, attributes: opts.attributes, ...(opts.links ? { links: opts.links } : {}) },
    opts.parent,
  );
  return new TracedSpan(span, opts.parent);
}

/** Runs `fn` in `ctx` (a no-op without a context manager). */
export function withContext<T>(ctx: Context, fn: () => T): T {
  return context.with(ctx, fn);
}

/** The active context of the caller. */
export function activeContext(): Context {
  return context.active();
}

export { type Context, ROOT_CONTEXT, type Tracer };
