import { z } from 'zod';

/** Compacted topic of worker status snapshots: key = worker id, a tombstone when the worker stops. */
export const STATUS_TOPIC = '__strand_status';
/** Compacted topic of control commands: key = consumer group, the latest command per group wins. */
export const CONTROL_TOPIC = '__strand_control';
/** How often a worker publishes its snapshot. */
export const SNAPSHOT_INTERVAL_MS = 5000;
/** A worker with no snapshot for this long is shown as stale. */
export const STALE_AFTER_MS = 15_000;

export const workerStates = ['running', 'paused', 'rebalancing', 'restarting'] as const;
export type WorkerState = (typeof workerStates)[number];

const snapshotSchema = z.object({
  v: z.literal(1),
  workerId: z.string(),
  group: z.string(),
  topic: z.string(),
  /** Retry tier topics with their delays, in tier order. */
  tiers: z.array(z.object({ topic: z.string(), delayMs: z.number() })),
  dlq: z.string(),
  host: z.string(),
  pid: z.number(),
  version: z.string(),
  state: z.enum(workerStates),
  startedAt: z.number(),
  /** When the snapshot was taken (ms since epoch, the worker's clock). */
  at: z.number(),
  assigned: z.array(z.object({ topic: z.string(), partition: z.number() })),
  inflight: z.number(),
  concurrency: z.number(),
  buffered: z.object({ jobs: z.number(), bytes: z.number() }),
  counters: z.object({
    completed: z.number(),
    failed: z.number(),
    retried: z.number(),
    dead: z.number(),
    duplicate: z.number(),
  }),
  oldestPendingAgeSeconds: z.number(),
  rssBytes: z.number(),
  /** With `tenant` or `limits`: the tenants with the most runnable jobs (top N + `other`), the limits' counts. */
  tenants: z
    .object({
      waiting: z.array(z.object({ tenant: z.string(), jobs: z.number() })),
      /** `queue_limited_total` by limit: times a runnable job was passed over for it, since the worker started. */
      limited: z.record(z.string(), z.number()),
      /** Records the intake deferred for over-share tenants, now. */
      deferred: z.number(),
    })
    .optional(),
  autoscale: z
    .object({
      targetLagPerReplica: z.number(),
      minReplicas: z.number(),
      maxReplicas: z.number(),
      scaleDownWindowMs: z.number(),
    })
    .optional(),
});

/** What a worker tells the console about itself every {@link SNAPSHOT_INTERVAL_MS}. */
export type WorkerSnapshot = z.infer<typeof snapshotSchema>;

const controlSchema = z.object({
  v: z.literal(1),
  group: z.string(),
  action: z.enum(['pause', 'resume']),
  at: z.number(),
  /** Who sent it, e.g. `console@host`. */
  by: z.string(),
});

/** A command to every worker of a group; the latest per group is the group's wanted state. */
export type ControlCommand = z.infer<typeof controlSchema>;

function parseJson<T>(schema: z.ZodType<T>, value: Buffer | null): T | undefined {
  if (!value) return undefined;
  try {
    const parsed = schema.safeParse(JSON.parse(value.toString('utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

/** A snapshot from a record value; undefined for a tombstone or anything that is not one. */
export function parseSnapshot(value: Buffer | null): WorkerSnapshot | undefined {
  return parseJson(snapshotSchema, value);
}

export function parseControl(value: Buffer | null): ControlCommand | undefined {
  return parseJson(controlSchema, value);
}

/** Topic settings of both compacted topics: small segments so compaction actually runs. */
export const consoleTopicConfigs = [
  { name: 'cleanup.policy', value: 'compact' },
  { name: 'segment.ms', value: String(60 * 60 * 1000) },
  { name: 'min.cleanable.dirty.ratio', value: '0.1' },
  { name: 'delete.retention.ms', value: String(60 * 60 * 1000) },
];
