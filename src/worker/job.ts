import type { Span } from '@opentelemetry/api';
import type { Logger } from '../observability/logger.js';
import type { TopicRecords } from '../ports.js';

/**
 * Where `ctx.enqueue` sends a follow-up job: a `JobProducer` (its topic and schema). `prepare`
 * validates and encodes without sending (the exactly-once round sends it); `enqueueMany` sends.
 */
export interface FollowUpTarget<J> {
  prepare(jobs: readonly J[]): Promise<{ jobIds: string[]; records: TopicRecords[] }>;
  enqueueMany(jobs: readonly J[]): Promise<readonly { jobId: string }[]>;
}

/**
 * The other form of a `ctx.enqueue` target: a topic and its Avro schema. The worker keeps one
 * producer per topic and schema on its own connection and registry (made on first use, closed when
 * the worker stops); the job is a `JobInput` as `JobProducer.enqueue` takes it.
 */
export interface FollowUpTopic {
  readonly topic: string;
  /** The follow-up's Avro schema (parsed `.avsc` JSON). */
  readonly schema: object;
  /** Registry subject. @defaultValue `<topic>-value` */
  readonly subject?: string;
}

/** A follow-up job `ctx.enqueue` accepted. */
export interface FollowUp {
  readonly jobId: string;
}

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
  /**
   * Enqueues a follow-up job through `target`: a `JobProducer`, or a topic and its schema
   * (`{ topic, schema }`, sent by a producer the worker keeps for it). With `exactlyOnce` it is written
   * in the same Kafka transaction as the commit of this job's offset, and only if this attempt
   * completes (a failed attempt's follow-ups are dropped): readers with `read_committed` see it
   * once per job. Without `exactlyOnce` it is a plain acknowledged send (at least once: a job run
   * again sends it again).
   */
  enqueue<J>(target: FollowUpTarget<J> | FollowUpTopic, job: J): Promise<FollowUp>;
}

export type JobHandler<T = Record<string, unknown>> = (job: Job<T>, ctx: JobContext) => Promise<void> | void;

/** The third argument of a batch handler's `ctx.enqueue`. */
export interface FollowUpOptions<T = Record<string, unknown>> {
  /** The job of this call the follow-up belongs to (one of the jobs the batch handler was given). */
  readonly for: Job<T>;
}

/** What a batch handler gets besides its jobs: a {@link JobContext} whose `enqueue` names the job. */
export interface BatchContext<T = Record<string, unknown>> extends Omit<JobContext, 'enqueue'> {
  /**
   * Enqueues a follow-up job through `target`, as {@link JobContext.enqueue} does, for the job named
   * by `{ for: job }`. With `exactlyOnce` the follow-up is written in the transaction of that job's
   * partition, with the commit of that job's offset, and only if that job completes in this call
   * (it is not in `{ failed }` and the call did not throw; a job retried in place starts over with
   * no follow-ups); `for` is then required when the call has more than one job (the promise
   * rejects without it). Without `exactlyOnce` it is a plain acknowledged send and `for` is only
   * informative.
   */
  enqueue<J>(
    target: FollowUpTarget<J> | FollowUpTopic,
    job: J,
    options?: FollowUpOptions<T>,
  ): Promise<FollowUp>;
}

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
  ctx: BatchContext<T>,
  // biome-ignore lint/suspicious/noConfusingVoidType: a batch handler that returns nothing completed every job
) => Promise<BatchResult<T> | void> | BatchResult<T> | void;
