import { z } from 'zod';
import type { RegistryOptions } from '../codec/registry.js';
import {
  avroSchemaObject,
  connectionSchema,
  duration,
  parseOptions,
  registrySchema,
} from '../config/validate.js';
import type { FailureKind } from '../failure/errors.js';
import type { IdempotencyStore } from '../idempotency/store.js';
import type { KafkaConnection } from '../kafka/client.js';
import type { Logger } from '../observability/logger.js';
import {
  limitsSchema,
  limitsWithoutBatches,
  type TenantOptions,
  tenantFunction,
} from './fairness/options.js';
import type { OrderingMode } from './key-scheduler.js';
import { exactlyOnceFits } from './round-parking.js';

export type {
  BatchContext,
  BatchFailure,
  BatchHandler,
  BatchResult,
  FollowUp,
  FollowUpOptions,
  FollowUpTarget,
  FollowUpTopic,
  Job,
  JobContext,
  JobHandler,
} from './job.js';

import type { BatchHandler, Job, JobHandler } from './job.js';

/** Options of a {@link Worker}. Durations accept milliseconds or strings like `"10s"`. */
export interface WorkerOptions<T = Record<string, unknown>> extends TenantOptions<T> {
  /** Bootstrap brokers; shorthand for `kafka.brokers`. */
  brokers?: string[];
  /** Full connection settings (TLS, SASL). */
  kafka?: KafkaConnection;
  /** Schema registry (Confluent API). */
  registry: RegistryOptions;
  /** The job topic. */
  topic: string;
  /** Consumer group id. */
  groupId: string;
  /** The job handler (exactly one of `handler` and `batchHandler`). */
  handler?: JobHandler<T>;
  /**
   * Many jobs per call, instead of `handler`: ordered and retried per job as with `handler`;
   * `concurrency` then counts batches. Returns the jobs that failed, if any.
   */
  batchHandler?: BatchHandler<T>;
  /** How batches for `batchHandler` are formed: at most `maxSize` jobs, closed `maxWaitMs` after the first. */
  batch?: {
    /** Most jobs per batch. @defaultValue 100 */
    maxSize?: number;
    /** How long a batch waits for more jobs after its first, when it is not full. @defaultValue 20 */
    maxWaitMs?: number | string;
  };
  /** Reader schema for decoding (schema evolution); default: each record's writer schema. */
  readerSchema?: object;
  /** Max jobs running at once in this worker. @defaultValue 16 */
  concurrency?: number;
  /** `key` (default): per-key order; `partition`: per-partition order; `unordered`. */
  ordering?: OrderingMode;
  /** Max accepted, unfinished jobs held in memory. @defaultValue 1000 */
  maxBufferedJobs?: number;
  /** Max bytes of accepted, unfinished record values held in memory. @defaultValue 64 MiB */
  maxBufferedBytes?: number;
  /** Starts per window, per worker (token bucket). */
  limiter?: { max: number; durationMs: number | string };
  /** Handler time budget; the signal aborts and the attempt fails (retriable). 0 = none. @defaultValue 30000 */
  jobTimeoutMs?: number | string;
  /** Commit period (with `exactlyOnce`: the round period). @defaultValue 1000 */
  commitIntervalMs?: number | string;
  /**
   * Exactly-once pipelines: a job's `ctx.enqueue` follow-ups (in a batch handler `{ for: job }` names
   * the job), its retry-tier or DLQ record and the commit of its offset go out in one Kafka
   * transaction per input partition and round (every `commitIntervalMs`), visible to `read_committed`
   * readers once the round commits (docs/guarantees.md). Needs `retry.ordering: 'relaxed'` (or no tiers).
   * @defaultValue false
   */
  exactlyOnce?: boolean;
  /** Time in-flight jobs get on stop before their signals abort. @defaultValue 30000 */
  shutdownTimeoutMs?: number | string;
  /** Time in-flight jobs of revoked partitions get to finish after a rebalance. @defaultValue 30000 */
  rebalanceTimeoutMs?: number | string;
  /** Consumer session timeout. @defaultValue 30000 */
  sessionTimeoutMs?: number | string;
  /** Consumer heartbeat interval. @defaultValue 3000 */
  heartbeatIntervalMs?: number | string;
  /** Start a new group at the earliest offset. @defaultValue true */
  fromBeginning?: boolean;
  /** Failure routing. */
  retry?: {
    /** Immediate retries in this worker, per delivery. @defaultValue 1 */
    inPlace?: number;
    /** Backoff between in-place retries. @defaultValue `{ baseMs: 100, maxMs: 5000, jitter: 0.2 }` */
    inPlaceBackoff?: { baseMs?: number; maxMs?: number; jitter?: number };
    /** Retry tier delays; one topic `<topic>.retry.<n>` each. @defaultValue `['1s', '10s', '60s']` */
    tiers?: (number | string)[];
    /** Total handler attempts before the DLQ. @defaultValue 5 */
    maxAttempts?: number;
    /**
     * How often a job may ask to run later (`RetryLaterError`, or `classify` → 'retry-later')
     * before it is dead-lettered. @defaultValue 10
     */
    maxRetryLater?: number;
    /**
     * `'strict'`: when a job goes to a retry tier, later jobs of its key (same partition) are parked
     * behind it and run, in offset order, once it completed or was dead-lettered; other keys flow.
     * `'relaxed'`: later jobs of the key run meanwhile (like Spring's retry topics). Needs
     * `ordering` `'key'` or `'partition'` (ignored for `'unordered'`). @defaultValue 'strict'
     */
    ordering?: 'strict' | 'relaxed';
    /**
     * Strict order, when the job a key waits behind is dead-lettered: `'release'` runs the parked
     * jobs, `'dead-letter'` sends them to the DLQ too (reason `key-dead`). @defaultValue 'release'
     */
    onDeadKey?: 'release' | 'dead-letter';
  };
  /** Overrides how an error is routed. Return undefined to keep the default. */
  classify?: (error: unknown) => FailureKind | undefined;
  /** Dead-letter topic. @defaultValue `<topic>.dlq` */
  dlqTopic?: string;
  /** Duplicate suppression (see docs/guarantees.md, Idempotency). */
  idempotency?: {
    store: 'memory' | IdempotencyStore;
    /** Lease a running job holds on its id. @defaultValue 60000 */
    leaseMs?: number | string;
    /** How long a completed id suppresses duplicates. @defaultValue 7 days */
    retainMs?: number | string;
    /** The id to deduplicate on. @defaultValue the `strand-job-id` header */
    key?: (job: Job<T>) => string;
    /**
     * Namespace of the ids in the store, so two groups (or two topics) sharing one store do not
     * take each other's jobs for duplicates. Give two workers the same scope only to deduplicate
     * across them on purpose; `false` uses bare ids (the keys before 0.2). @defaultValue `<groupId>/<topic>`
     */
    scope?: string | false;
  };
  /** Prometheus `/metrics`, `/healthz`, `/readyz`. */
  metrics?: { port: number; host?: string };
  /** Lag refresh period. @defaultValue 5000 */
  lagIntervalMs?: number | string;
  /** Desired-replica signal. */
  autoscale?: {
    targetLagPerReplica?: number;
    minReplicas?: number;
    maxReplicas?: number;
    scaleDownWindowMs?: number | string;
  };
  /**
   * Publish a status snapshot every 5 s to `__strand_status` and obey pause/resume from
   * `__strand_control` (the console's Workers and Controls pages). `STRAND_STATUS=off` also turns
   * it off. @defaultValue true
   */
  status?: boolean;
  /** kafkajs: fetched partitions taken at once. @defaultValue 3 (64: `batchHandler` with strict key order) */
  partitionsConsumedConcurrently?: number;
  /**
   * OpenTelemetry spans for every attempt (through the global tracer provider and propagator; a
   * no-op until the application registers an SDK). `false` turns them off. @defaultValue true
   */
  tracing?: boolean;
  /** pino logger. */
  logger?: Logger;
}

const positiveInt = z.number().int().positive();

/** Batches when `batchHandler` is given without `batch`. */
export const defaultBatchOptions = { maxSize: 100, maxWaitMs: 20 } as const;

const workerOptionsObject = z
  .object({
    brokers: connectionSchema.shape.brokers.optional(),
    kafka: connectionSchema.optional(),
    registry: registrySchema,
    topic: z
      .string()
      .min(1)
      .max(200)
      .regex(/^[a-zA-Z0-9._-]+$/, 'expected a Kafka topic name'),
    groupId: z.string().min(1),
    handler: z
      .custom<JobHandler<never>>(
        (v) => typeof v === 'function',
        'expected a function (job, ctx) => Promise<void>',
      )
      .optional(),
    batchHandler: z
      .custom<BatchHandler<never>>(
        (v) => typeof v === 'function',
        'expected a function (jobs, ctx) => Promise<{ failed? } | void>',
      )
      .optional(),
    batch: z
      .object({
        maxSize: positiveInt.max(100_000).default(defaultBatchOptions.maxSize),
        maxWaitMs: duration.pipe(z.number().max(60_000)).default(defaultBatchOptions.maxWaitMs),
      })
      .strict()
      .optional(),
    readerSchema: avroSchemaObject.optional(),
    concurrency: positiveInt.max(10_000).default(16),
    ordering: z.enum(['key', 'partition', 'unordered']).default('key'),
    maxBufferedJobs: positiveInt.default(1000),
    maxBufferedBytes: positiveInt.default(64 * 1024 * 1024),
    limiter: z
      .object({ max: positiveInt, durationMs: duration.pipe(z.number().positive()) })
      .strict()
      .optional(),
    jobTimeoutMs: duration.default(30_000),
    commitIntervalMs: duration.pipe(z.number().min(10)).default(1000),
    exactlyOnce: z.boolean().default(false),
    shutdownTimeoutMs: duration.default(30_000),
    rebalanceTimeoutMs: duration.default(30_000),
    sessionTimeoutMs: duration.pipe(z.number().min(6000)).default(30_000),
    heartbeatIntervalMs: duration.pipe(z.number().min(100)).default(3000),
    fromBeginning: z.boolean().default(true),
    retry: z
      .object({
        inPlace: z.number().int().min(0).max(100).default(1),
        inPlaceBackoff: z
          .object({
            baseMs: z.number().int().min(0).default(100),
            maxMs: z.number().int().min(0).default(5000),
            jitter: z.number().min(0).max(1).default(0.2),
          })
          .strict()
          .default({ baseMs: 100, maxMs: 5000, jitter: 0.2 }),
        tiers: z
          .array(duration.pipe(z.number().positive('a tier delay must be > 0')))
          .max(20)
          .default([1000, 10_000, 60_000]),
        maxAttempts: positiveInt.default(5),
        maxRetryLater: z.number().int().min(0).max(10_000).default(10),
        ordering: z.enum(['strict', 'relaxed']).default('strict'),
        onDeadKey: z.enum(['release', 'dead-letter']).default('release'),
      })
      .strict()
      .default({
        inPlace: 1,
        inPlaceBackoff: { baseMs: 100, maxMs: 5000, jitter: 0.2 },
        tiers: [1000, 10_000, 60_000],
        maxAttempts: 5,
        maxRetryLater: 10,
        ordering: 'strict',
        onDeadKey: 'release',
      }),
    classify: z
      .custom<(error: unknown) => FailureKind | undefined>(
        (v) => typeof v === 'function',
        'expected a function',
      )
      .optional(),
    dlqTopic: z.string().min(1).optional(),
    idempotency: z
      .object({
        store: z.union([
          z.literal('memory'),
          z.custom<IdempotencyStore>(
            (v) => typeof v === 'object' && v !== null && typeof (v as IdempotencyStore).begin === 'function',
            'expected "memory" or an IdempotencyStore',
          ),
        ]),
        leaseMs: duration.pipe(z.number().min(100)).default(60_000),
        retainMs: duration.pipe(z.number().min(1000)).default(7 * 24 * 3600_000),
        key: z
          .custom<(job: Job<never>) => string>((v) => typeof v === 'function', 'expected a function')
          .optional(),
        scope: z.union([z.string().min(1).max(200), z.literal(false)]).optional(),
      })
      .strict()
      .optional(),
    metrics: z
      .object({ port: z.number().int().min(0).max(65535), host: z.string().default('0.0.0.0') })
      .strict()
      .optional(),
    lagIntervalMs: duration.pipe(z.number().min(100)).default(5000),
    autoscale: z
      .object({
        targetLagPerReplica: positiveInt.default(500),
        minReplicas: z.number().int().min(0).default(1),
        maxReplicas: positiveInt.default(50),
        scaleDownWindowMs: duration.default(300_000),
      })
      .strict()
      .refine((a) => a.minReplicas <= a.maxReplicas, {
        message: 'minReplicas must be <= maxReplicas',
        path: ['minReplicas'],
      })
      .default({ targetLagPerReplica: 500, minReplicas: 1, maxReplicas: 50, scaleDownWindowMs: 300_000 }),
    status: z.boolean().default(true),
    partitionsConsumedConcurrently: positiveInt.max(64).optional(),
    tracing: z.boolean().default(true),
    logger: z.custom<Logger>((v) => typeof v === 'object' && v !== null).optional(),
    tenant: tenantFunction,
    limits: limitsSchema,
  })
  .strict();

/** Exactly one of `handler` and `batchHandler`. */
const oneHandler = (o: { handler?: unknown; batchHandler?: unknown }, ctx: z.RefinementCtx) => {
  if (o.handler === undefined && o.batchHandler === undefined)
    ctx.addIssue({
      code: 'custom',
      message: 'expected a function (job, ctx) => Promise<void>, or a batchHandler',
      path: ['handler'],
    });
  else if (o.handler !== undefined && o.batchHandler !== undefined)
    ctx.addIssue({
      code: 'custom',
      message: 'give handler or batchHandler, not both',
      path: ['batchHandler'],
    });
};
/** `batch` only with `batchHandler`. */
const batchWithBatchHandler = {
  check: (o: { batch?: unknown; batchHandler?: unknown }) =>
    o.batch === undefined || o.batchHandler !== undefined,
  params: { message: 'batch options need a batchHandler', path: ['batch'] },
};

const heartbeatBelowSession = {
  check: (o: { heartbeatIntervalMs: number; sessionTimeoutMs: number }) =>
    o.heartbeatIntervalMs < o.sessionTimeoutMs,
  params: { message: 'must be lower than sessionTimeoutMs', path: ['heartbeatIntervalMs'] },
};

export const workerOptionsSchema = workerOptionsObject
  .refine((o) => o.brokers !== undefined || o.kafka !== undefined, {
    message: 'expected brokers or kafka.brokers',
    path: ['brokers'],
  })
  .refine(heartbeatBelowSession.check, heartbeatBelowSession.params)
  .superRefine(oneHandler)
  .superRefine(exactlyOnceFits)
  .refine(batchWithBatchHandler.check, batchWithBatchHandler.params)
  .refine(limitsWithoutBatches.check, limitsWithoutBatches.params);

/** A definition may leave the connection to `strand worker` (flags and STRAND_* environment). */
const definitionSchema = workerOptionsObject
  .partial({ brokers: true, kafka: true, registry: true })
  .refine(heartbeatBelowSession.check, heartbeatBelowSession.params)
  .superRefine(oneHandler)
  .superRefine(exactlyOnceFits)
  .refine(batchWithBatchHandler.check, batchWithBatchHandler.params)
  .refine(limitsWithoutBatches.check, limitsWithoutBatches.params);

export type ResolvedWorkerOptions = z.output<typeof workerOptionsSchema>;

const DEFINED = Symbol.for('strand.worker-definition');

/** A worker's options where the connection may come from `strand worker` (flags, STRAND_* env). */
export type WorkerDefinitionOptions<T = Record<string, unknown>> = Omit<WorkerOptions<T>, 'registry'> & {
  registry?: WorkerOptions<T>['registry'];
};

/** A validated worker definition, as `strand worker <module>` expects from a module's default export. */
export type WorkerDefinition<T = Record<string, unknown>> = WorkerDefinitionOptions<T> & {
  readonly [DEFINED]: true;
};

/**
 * Validates worker options (a `ConfigError` names the bad field) and marks them as a definition,
 * the shape `strand worker <module>` loads. With `registry` given, the definition is also complete
 * `WorkerOptions`: `new Worker(defineWorker({...}))`. Without it, `strand worker` supplies the
 * registry from its flags or the environment.
 */
export function defineWorker<T = Record<string, unknown>>(
  options: WorkerOptions<T>,
): WorkerDefinition<T> & WorkerOptions<T>;
export function defineWorker<T = Record<string, unknown>>(
  options: WorkerDefinitionOptions<T>,
): WorkerDefinition<T>;
export function defineWorker<T = Record<string, unknown>>(
  options: WorkerDefinitionOptions<T>,
): WorkerDefinition<T> {
  parseOptions(definitionSchema, options, 'worker');
  return Object.assign({}, options, { [DEFINED]: true as const });
}

export function isWorkerDefinition(value: unknown): value is WorkerDefinition {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[DEFINED] === true;
}

export function resolveWorkerOptions(options: WorkerOptions<never>): ResolvedWorkerOptions {
  return parseOptions(workerOptionsSchema, options, 'worker');
}

/** Every top-level worker option name (docs/options.md's table is checked against it). */
export const workerOptionNames: readonly string[] = Object.keys(workerOptionsObject.shape);
