import { randomUUID } from 'node:crypto';
import { SpanKind, trace } from '@opentelemetry/api';
import { ConfigError } from '../config/errors.js';
import { StrandError } from '../errors.js';
import { HEADERS, headerString } from '../headers.js';
import {
  type Admin,
  createKafka,
  type IHeaders,
  type KafkaConnection,
  type KafkaMessage,
  Partitioners,
} from '../kafka/client.js';
import { partitionCounts, sendAcknowledged } from '../kafka/send.js';
import { fenceEarlierTransactions, sendOffsetsInTransaction } from '../kafka/transaction.js';
import { replayedSets } from '../lag/lag.js';
import {
  addReplayed,
  decodeReplayed,
  encodeReplayed,
  pruneReplayed,
  type ReplayedSet,
  replayGroupName,
  wasReplayed,
} from '../lag/replayed.js';
import {
  ATTR,
  activeTracer,
  ROOT_CONTEXT,
  recordContext,
  startSpan,
  type TracedSpan,
} from '../observability/tracing.js';
import { RateLimiter } from '../timing/limiter.js';
import { topicNames } from '../topology/topics.js';

/** One dead-lettered job, as `strand dlq list` shows it. */
export interface DeadJob {
  partition: number;
  offset: string;
  key: string | null;
  jobId: string | undefined;
  errorClass: string | undefined;
  errorMessage: string | undefined;
  decodeReason: string | undefined;
  /** Why it was dead-lettered (`strand-dead-reason`): non-retriable, attempts-exhausted, key-dead, … */
  reason: string | undefined;
  /** A `key-dead` job: the job id of the dead job its key waited behind. */
  cause: string | undefined;
  attempts: number | undefined;
  failedAt: number | undefined;
  replayCount: number;
  originTopic: string | undefined;
  valueBytes: number;
}

/** A dead job as listed, from its DLQ record. */
export function toDeadJob(partition: number, m: KafkaMessage): DeadJob {
  const h = m.headers;
  const num = (name: string) => {
    const v = headerString(h, name);
    return v === undefined ? undefined : Number(v);
  };
  return {
    partition,
    offset: m.offset,
    key: m.key ? m.key.toString('utf8') : null,
    jobId: headerString(h, HEADERS.jobId),
    errorClass: headerString(h, HEADERS.errorClass),
    errorMessage: headerString(h, HEADERS.errorMessage),
    decodeReason: headerString(h, HEADERS.decodeReason),
    reason: headerString(h, HEADERS.deadReason),
    cause: headerString(h, HEADERS.deadCause),
    attempts: num(HEADERS.attempt),
    failedAt: num(HEADERS.failedAt),
    replayCount: num(HEADERS.replayCount) ?? 0,
    originTopic: headerString(h, HEADERS.originTopic),
    valueBytes: m.value?.length ?? 0,
  };
}

/** Runs `fn` with a connected admin client, disconnected afterwards whatever happens. */
async function withAdmin<T>(conn: KafkaConnection, fn: (admin: Admin) => Promise<T>): Promise<T> {
  const admin = createKafka(conn).admin();
  try {
    await admin.connect();
    return await fn(admin);
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/**
 * A missing DLQ is a one-line answer, not kafkajs' "does not host this topic-partition" after its
 * metadata retries (and a consumer left waiting for a topic that never comes).
 */
async function assertDlqExists(conn: KafkaConnection, dlq: string, topic: string): Promise<void> {
  const exists = await withAdmin(conn, async (admin) => (await admin.listTopics()).includes(dlq));
  if (!exists)
    throw new StrandError(
      'KAFKA',
      `dead-letter topic ${dlq} does not exist (create it with "strand topics create ${topic}")`,
    );
}

/** How long a read that gets no batch at all waits before it counts as finished. */
const READ_IDLE_MS = 15_000;

/**
 * Reads a topic from a group's position (or the beginning) up to the end offsets as they were when
 * the call started, batch by batch. Resolves when every partition reached its snapshot end.
 * `positionsOf` reads from another group's position instead (a dry run reads from where its
 * replay would start, with a group of its own that commits nothing): `groupId` then starts at
 * the beginning and records below that position are skipped.
 */
async function readToEnd(
  conn: KafkaConnection,
  topic: string,
  groupId: string,
  onBatch: (partition: number, messages: KafkaMessage[]) => Promise<'continue' | 'stop'>,
  opts: { idleMs?: number; positionsOf?: string } = {},
): Promise<void> {
  const idleMs = opts.idleMs ?? READ_IDLE_MS;
  const kafka = createKafka(conn);
  const { topicOffsets, committed } = await withAdmin(conn, async (admin) => {
    const topicOffsets = await admin.fetchTopicOffsets(topic);
    const [committed] = await admin.fetchOffsets({ groupId: opts.positionsOf ?? groupId, topics: [topic] });
    return { topicOffsets, committed };
  });
  const ends = new Map(topicOffsets.map((o) => [o.partition, Number(o.high)]));
  const lows = new Map(topicOffsets.map((o) => [o.partition, Number(o.low)]));
  const starts = new Map<number, number>();
  const remaining = new Set<number>();
  for (const [p, end] of ends) {
    const at = Number(committed?.partitions.find((x) => x.partition === p)?.offset ?? -1);
    const start = at >= 0 ? at : (lows.get(p) ?? 0);
    starts.set(p, start);
    if (start < end) remaining.add(p);
  }
  if (remaining.size === 0) return;
  const consumer = kafka.consumer({
    groupId,
    maxWaitTimeInMs: 200,
    sessionTimeout: 10_000,
    heartbeatInterval: 1000,
  });
  let stop = false;
  let busy = false;
  let lastProgress = Date.now();
  try {
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const finish = (error?: unknown) => {
        stop = true;
        clearInterval(idle);
        if (error === undefined) resolve();
        else reject(error);
      };
      // Records past the committed position may all be invisible (aborted transactions, markers),
      // and kafkajs hands no batch for those: a read that gets nothing for a while has reached the end.
      const idle = setInterval(
        () => {
          if (!busy && Date.now() - lastProgress > idleMs) finish();
        },
        Math.min(1000, idleMs),
      );
      consumer
        .run({
          autoCommit: false,
          eachBatch: async ({ batch, heartbeat }) => {
            if (stop || !remaining.has(batch.partition)) return;
            busy = true;
            try {
              const end = ends.get(batch.partition) ?? 0;
              const start = starts.get(batch.partition) ?? 0;
              const messages = batch.messages.filter(
                (m) => Number(m.offset) >= start && Number(m.offset) < end,
              );
              if (messages.length > 0 && (await onBatch(batch.partition, messages)) === 'stop') stop = true;
              const last = Number(batch.messages[batch.messages.length - 1]?.offset ?? -1);
              if (last + 1 >= end || Number(batch.lastOffset()) + 1 >= end) remaining.delete(batch.partition);
              // Done: no heartbeat, whose rebalance error (another member joined) would fail a read
              // that has nothing left to do.
              if (stop || remaining.size === 0) finish();
              else await heartbeat();
            } catch (error) {
              // Fail the read rather than let kafkajs retry the batch (a replay's transaction may be fenced).
              finish(error);
            } finally {
              busy = false;
              lastProgress = Date.now();
            }
          },
        })
        .catch((error: unknown) => finish(error));
    });
  } finally {
    await consumer.disconnect().catch(() => undefined);
  }
}

/** A listed dead job: `replayed` when a `strand dlq replay` (or the console) already re-published it. */
export interface ListedDeadJob extends DeadJob {
  replayed: boolean;
}

/**
 * Lists dead-lettered jobs (the newest `limit` when more exist), each marked when a replay already
 * re-published it. Leaves no consumer group behind.
 */
export async function listDeadJobs(
  conn: KafkaConnection,
  topic: string,
  opts: { limit?: number; dlqTopic?: string } = {},
): Promise<ListedDeadJob[]> {
  const dlq = opts.dlqTopic ?? topicNames(topic, 0).dlq;
  const groupId = `strand-dlq-list-${randomUUID()}`;
  const jobs: ListedDeadJob[] = [];
  await assertDlqExists(conn, dlq, topic);
  try {
    await readToEnd(conn, dlq, groupId, async (partition, messages) => {
      for (const m of messages) jobs.push({ ...toDeadJob(partition, m), replayed: false });
      return 'continue';
    });
  } finally {
    await withAdmin(conn, (admin) => admin.deleteGroups([groupId])).catch(() => undefined);
  }
  const sets = await withAdmin(conn, (admin) => replayedSets(admin, topic, dlq));
  for (const job of jobs) job.replayed = wasReplayed(sets.get(job.partition), Number(job.offset));
  jobs.sort(
    (a, b) =>
      (a.failedAt ?? 0) - (b.failedAt ?? 0) ||
      a.partition - b.partition ||
      Number(a.offset) - Number(b.offset),
  );
  return opts.limit !== undefined && jobs.length > opts.limit ? jobs.slice(jobs.length - opts.limit) : jobs;
}

export interface ReplayFilter {
  errorClass?: string;
  key?: string;
  /** Only jobs that failed at or after this time (ms since epoch). */
  since?: number;
}

export interface ReplayOptions extends ReplayFilter {
  dlqTopic?: string;
  /** Max jobs to replay in this run. */
  limit?: number;
  /** Max jobs per second. */
  rate?: number;
  dryRun?: boolean;
  onProgress?: (p: { scanned: number; matched: number; sent: number }) => void;
}

export interface ReplayResult {
  scanned: number;
  matched: number;
  sent: number;
  /**
   * Matched jobs that were dead-lettered because they could not be decoded: replayed, they go to the
   * same worker with the same bytes and can only be dead-lettered again.
   */
  undecodable: number;
  dryRun: boolean;
  /** The filter's replay group (a dry run reads from its position). */
  group: string;
  /**
   * The matched jobs (a dry run: those the replay would send), each marked `replayed` when another
   * replay (another filter, or one by one) sent it already: this one sends it again.
   */
  jobs: ListedDeadJob[];
}

/**
 * A replay that stopped partway (the broker went away, another run of the same filter fenced it,
 * …). What it sent is exact: each batch's records and the replay group's position were committed
 * in one transaction, so `sent` jobs reached the job topic, nothing of the failed batch did, and
 * the same replay run again resumes after them without sending any twice.
 */
export class ReplayStoppedError extends StrandError {
  /** The first line of the cause. */
  readonly reason: string;
  constructor(
    readonly topic: string,
    readonly progress: { scanned: number; matched: number; sent: number },
    readonly group: string,
    /** Jobs of a batch whose commit got no answer: all of them reached the job topic, or none. */
    readonly unconfirmed: number,
    cause: unknown,
  ) {
    const reason = cause instanceof Error ? (cause.message.split('\n')[0] ?? cause.message) : String(cause);
    super(
      'KAFKA',
      `replay to ${topic} stopped after sending ${progress.sent} job(s)${unconfirmedNote(unconfirmed)}: ${reason}; ` +
        'running the same replay again is safe: it resumes after what was sent and sends nothing twice',
      { cause, retriable: true },
    );
    this.reason = reason;
  }
}

/** The note on jobs whose commit got no answer, if any. */
export function unconfirmedNote(unconfirmed: number): string {
  return unconfirmed
    ? ` (and ${unconfirmed} more whose commit got no answer: all of them or none were sent)`
    : '';
}

/** Error classes of the dead jobs in a DLQ, with how many each. */
export async function deadErrorClasses(
  conn: KafkaConnection,
  topic: string,
  opts: { dlqTopic?: string } = {},
): Promise<Map<string, number>> {
  const classes = new Map<string, number>();
  for (const job of await listDeadJobs(conn, topic, opts)) {
    const name = job.errorClass ?? '(none)';
    classes.set(name, (classes.get(name) ?? 0) + 1);
  }
  return classes;
}

/** A `--error` filter that names no class present in the DLQ is a typo, not "nothing to replay". */
function unknownClass(errorClass: string, classes: Map<string, number>): ConfigError {
  const present = [...classes].sort((a, b) => b[1] - a[1]).map(([name, n]) => `${name} (${n})`);
  return new ConfigError(
    'errorClass',
    `no dead job has error class "${errorClass}"; ${present.length ? `classes present: ${present.join(', ')}` : 'the dead-letter topic is empty'}`,
  );
}

function matches(job: DeadJob, f: ReplayFilter): boolean {
  if (f.errorClass !== undefined && job.errorClass !== f.errorClass) return false;
  if (f.key !== undefined && job.key !== f.key) return false;
  if (f.since !== undefined && (job.failedAt ?? 0) < f.since) return false;
  return true;
}

/**
 * What a replayed job must not take back: its last failure, and counters of its last life that
 * would decide its next one (`strand-retry-later` of a `retry-later-exhausted` job sent it
 * straight back to the DLQ at its first `RetryLaterError`).
 */
const FAILURE_HEADERS = [
  HEADERS.dueAt,
  HEADERS.retryLater,
  HEADERS.deadReason,
  HEADERS.deadCause,
  HEADERS.parksKey,
  HEADERS.failedAt,
  HEADERS.errorClass,
  HEADERS.errorMessage,
  HEADERS.errorStack,
  HEADERS.decodeReason,
  HEADERS.group,
];

/** The headers a replayed job goes back with: failure headers dropped, attempt 1, replay count + 1. */
export function replayHeaders(m: KafkaMessage): IHeaders {
  const out: IHeaders = {};
  for (const [k, v] of Object.entries(m.headers ?? {})) {
    if (v !== undefined && !FAILURE_HEADERS.includes(k as never)) out[k] = v;
  }
  out[HEADERS.attempt] = '1';
  out[HEADERS.replayCount] = String(Number(headerString(m.headers, HEADERS.replayCount) ?? '0') + 1);
  return out;
}

/**
 * The records a replay sends for dead jobs of one DLQ partition. With an OpenTelemetry SDK
 * registered, each replayed job starts a new trace: a root PRODUCER span (`send <topic>`) linked to
 * the dead job's context, whose context the replayed record carries. `settle` ends the spans once
 * the replay's transaction committed (or failed with `error`).
 */
export function replayRecords(
  topic: string,
  from: { dlq: string; partition: number },
  messages: readonly KafkaMessage[],
): {
  records: { key: Buffer | null; value: Buffer | null; headers: IHeaders }[];
  settle(error?: unknown): void;
} {
  const tracer = activeTracer();
  const spans: TracedSpan[] = [];
  const records = messages.map((m) => {
    const headers = replayHeaders(m);
    if (tracer) {
      const deadSpan = trace.getSpanContext(recordContext(m.headers));
      const jobId = headerString(m.headers, HEADERS.jobId);
      const span = startSpan(tracer, `send ${topic}`, {
        kind: SpanKind.PRODUCER,
        parent: ROOT_CONTEXT,
        ...(deadSpan ? { links: [{ context: deadSpan }] } : {}),
        attributes: {
          [ATTR.system]: 'kafka',
          [ATTR.destination]: topic,
          ...(m.key ? { [ATTR.key]: m.key.toString('utf8') } : {}),
          ...(jobId !== undefined ? { [ATTR.messageId]: jobId } : {}),
          [ATTR.operationType]: 'send',
          [ATTR.operationName]: 'send',
          [ATTR.replayCount]: Number(headerString(headers, HEADERS.replayCount)),
          [ATTR.replayedFrom]: `${from.dlq}:${from.partition}:${m.offset}`,
        },
      });
      span.inject(headers);
      spans.push(span);
    }
    return { key: m.key, value: m.value, headers };
  });
  return {
    records,
    settle: (error) => {
      for (const span of spans) {
        if (error !== undefined) span.fail(error);
        span.end();
      }
    },
  };
}

/** The replay group: one per job topic and filter, so each filter resumes where it stopped. */
export function replayGroup(topic: string, f: ReplayFilter): string {
  return replayGroupName(topic, f);
}

/**
 * Re-publishes matching dead jobs to the job topic (key and bytes kept, `strand-attempt` reset,
 * `strand-replay-count` incremented). Each batch is sent and its DLQ position committed in one Kafka
 * transaction, so an interrupted replay resumes where it stopped and never sends a job twice. The
 * commit's metadata carries the set of DLQ offsets this filter's group has sent (`lag/replayed.ts`),
 * which `dlqDepth` subtracts: records a filtered replay skipped still count as dead.
 */
export async function replayDeadJobs(
  conn: KafkaConnection,
  topic: string,
  opts: ReplayOptions = {},
): Promise<ReplayResult> {
  const dlq = opts.dlqTopic ?? topicNames(topic, 0).dlq;
  const filter: ReplayFilter = {
    ...(opts.errorClass !== undefined ? { errorClass: opts.errorClass } : {}),
    ...(opts.key !== undefined ? { key: opts.key } : {}),
    ...(opts.since !== undefined ? { since: opts.since } : {}),
  };
  const replayGroupOfFilter = replayGroup(topic, filter);
  // A dry run reads from where this filter's replay would start, with a group of its own that
  // commits nothing (and is deleted): it counts exactly what the replay would send.
  const group = opts.dryRun ? `strand-dlq-dryrun-${randomUUID()}` : replayGroupOfFilter;
  const result: ReplayResult = {
    scanned: 0,
    matched: 0,
    sent: 0,
    undecodable: 0,
    dryRun: opts.dryRun === true,
    group: replayGroupOfFilter,
    jobs: [],
  };
  await assertDlqExists(conn, dlq, topic);
  if (opts.errorClass !== undefined) {
    // Checked on the whole DLQ before this filter's replay group commits anything: a class whose
    // jobs were all replayed already is no typo.
    const classes = await deadErrorClasses(conn, topic, opts.dlqTopic ? { dlqTopic: opts.dlqTopic } : {});
    if (!classes.has(opts.errorClass)) throw unknownClass(opts.errorClass, classes);
  }
  const kafka = createKafka(conn);
  const producer = opts.dryRun
    ? undefined
    : kafka.producer({
        // Every record gets an explicit partition (sendAcknowledged); this only silences kafkajs' v2 notice.
        createPartitioner: Partitioners.DefaultPartitioner,
        transactionalId: group,
        idempotent: true,
        maxInFlightRequests: 1,
        allowAutoTopicCreation: false,
      });
  const admin = producer ? kafka.admin() : undefined;
  const counts = admin ? partitionCounts(admin) : undefined;
  const limiter = opts.rate ? new RateLimiter(Math.max(1, opts.rate), 1000) : undefined;
  const limit = opts.limit ?? Number.POSITIVE_INFINITY;
  // What this group replayed so far, per DLQ partition (read after the producer fenced any earlier
  // run of the same filter). Each batch commits it with the position, for `dlqDepth` to subtract.
  const replayed = new Map<number, ReplayedSet>();
  const lows = new Map<number, number>();
  try {
    await producer?.connect();
    if (producer) await fenceEarlierTransactions(producer);
    await admin?.connect();
    // What any replay (another filter, or one by one) sent already: such jobs go again if matched.
    const sentBefore = await (admin
      ? replayedSets(admin, topic, dlq)
      : withAdmin(conn, (a) => replayedSets(a, topic, dlq)));
    if (admin) {
      for (const o of await admin.fetchTopicOffsets(dlq)) lows.set(o.partition, Number(o.low));
      const [committed] = await admin.fetchOffsets({ groupId: group, topics: [dlq] });
      const unfiltered = group === replayGroupName(topic, {});
      for (const p of committed?.partitions ?? []) {
        const position = Number(p.offset);
        const legacy: ReplayedSet = { runs: unfiltered && position > 0 ? [[0, position]] : [] };
        replayed.set(p.partition, decodeReplayed(p.metadata) ?? legacy);
      }
    }
    // Jobs of the batch being committed: a commit without an answer leaves them in doubt.
    let committing = 0;
    const read = readToEnd(
      conn,
      dlq,
      group,
      async (partition, messages) => {
        const toSend: KafkaMessage[] = [];
        let lastOffset = Number(messages[0]!.offset) - 1;
        for (const m of messages) {
          if (result.matched >= limit) break;
          result.scanned++;
          lastOffset = Number(m.offset);
          const job = toDeadJob(partition, m);
          if (!matches(job, filter)) continue;
          result.matched++;
          if (job.decodeReason !== undefined) result.undecodable++;
          result.jobs.push({ ...job, replayed: wasReplayed(sentBefore.get(partition), Number(m.offset)) });
          toSend.push(m);
        }
        if (producer) {
          // Rate limiting happens before the transaction opens, so no transaction stays open for long.
          for (let i = 0; i < toSend.length && limiter; i++) {
            while (!limiter.tryTake()) await new Promise((r) => setTimeout(r, limiter.msUntilNext()));
          }
          const replay = replayRecords(topic, { dlq, partition }, toSend);
          const tx = await producer.transaction();
          try {
            if (toSend.length > 0)
              await sendAcknowledged(tx, [{ topic, messages: replay.records }], {
                counts,
                inTransaction: true,
              });
            const set = pruneReplayed(
              addReplayed(
                replayed.get(partition) ?? { runs: [] },
                toSend.map((m) => Number(m.offset)),
              ),
              lows.get(partition) ?? 0,
            );
            const metadata = encodeReplayed(set);
            const partitions = [{ partition, offset: String(lastOffset + 1), metadata }];
            await sendOffsetsInTransaction(tx, {
              consumerGroupId: group,
              topics: [{ topic: dlq, partitions }],
            });
            committing = toSend.length;
            await tx.commit();
            committing = 0;
            replay.settle();
            replayed.set(partition, decodeReplayed(metadata) ?? set);
          } catch (error) {
            replay.settle(error);
            await tx.abort().catch(() => undefined);
            throw error;
          }
          result.sent += toSend.length;
        }
        opts.onProgress?.({ scanned: result.scanned, matched: result.matched, sent: result.sent });
        return result.matched >= limit ? 'stop' : 'continue';
      },
      opts.dryRun ? { positionsOf: replayGroupOfFilter } : {},
    );
    await read.catch((error: unknown) => {
      if (!producer) throw error;
      const { scanned, matched, sent } = result;
      throw new ReplayStoppedError(topic, { scanned, matched, sent }, group, committing, error);
    });
  } finally {
    await producer?.disconnect().catch(() => undefined);
    await admin?.disconnect().catch(() => undefined);
    if (opts.dryRun) await withAdmin(conn, (a) => a.deleteGroups([group])).catch(() => undefined);
  }
  return result;
}
