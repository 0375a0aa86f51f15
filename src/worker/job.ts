import type { Span } from '@opentelemetry/api';
import type { Logger } from '../observability/logger.js';

/** A job as the handler sees it. */
export interface Job<T = Record<string, unknown>> {
  /** `strand-job-id` (the idempotency key). */
  readonly id: string;
  /** Ordering key (record key), or null. */
  readonly key: string | null;
  readonly data: T;
  /** 1 for the first delivery, +1 for every retry. */
  readonly attempt: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
  /** `strand-enqueued-at`, ms since epoch, when known. */
  readonly enqueuedAt: number | undefined;
}

/** What the handler gets besides the job. */
export interface JobContext {
  /** Aborts on job timeout and on shutdown past its budget. */
  readonly signal: AbortSignal;
  /**
   * A logger bound to the job (topic, partition, offset, key, job id, attempt; `trace_id` and
   * `span_id` when the attempt is traced).
   */
  readonly logger: Logger;
  /**
   * The attempt's span (`process <topic>`), also the active span while the handler runs; a
   * non-recording span when tracing is off or no OpenTelemetry SDK is registered.
   */
  readonly span: Span;
}

export type JobHandler<T = Record<string, unknown>> = (job: Job<T>, ctx: JobContext) => Promise<void> | void;

/** One job of a batch that failed, and why; it goes through the retry policy like a failed handler. */
export interface BatchFailure<T = Record<string, unknown>> {
  readonly job: Job<T>;
  readonly error: unknown;
}

/**
 * What a batch handler returns: nothing (every job completed) or the jobs that failed (the rest
 * completed). Throwing fails every job of the batch with that error.
 */
export type BatchResult<T = Record<string, unknown>> =
  | { readonly failed?: readonly BatchFailure<T>[] }
  | undefined;

/** Many jobs per call (docs/options.md, "Batch handlers"); `ctx.signal` aborts at `jobTimeoutMs` of the batch. */
export type BatchHandler<T = Record<string, unknown>> = (
  jobs: readonly Job<T>[],
  ctx: JobContext,
  // biome-ignore lint/suspicious/noConfusingVoidType: a batch handler that returns nothing completed every job
) => Promise<BatchResult<T> | void> | BatchResult<T> | void;
