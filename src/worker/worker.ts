import { EventEmitter, setMaxListeners } from 'node:events';
import type { Server } from 'node:http';
import { hostname } from 'node:os';
import { AvroCodec, DecodeError, RegistryUnavailableError, SchemaRegistryGateway } from '../codec/index.js';
import { StrandError } from '../errors.js';
import { backoffDelay } from '../failure/backoff.js';
import { defaultClassify, errorClassName, type FailureKind, JobTimeoutError } from '../failure/errors.js';
import { OutcomeRouter, type Route } from '../failure/router.js';
import { type TopicNames, topicNames } from '../failure/topics.js';
import { HEADERS } from '../headers.js';
import { MemoryIdempotencyStore } from '../idempotency/memory-store.js';
import type { IdempotencyStore } from '../idempotency/store.js';
import {
  type Admin,
  type Consumer,
  createKafka,
  type EachBatchPayload,
  explainConnectError,
  type KafkaConnection,
  Partitioners,
  type Producer,
} from '../kafka/client.js';
import { partitionCounts } from '../kafka/send.js';
import { computeLag, DesiredReplicas, dlqDepth, type PartitionLag } from '../lag/lag.js';
import { startMetricsServer } from '../observability/http.js';
import { createLogger, kafkaLogSink, type Logger } from '../observability/logger.js';
import { QueueMetrics } from '../observability/metrics.js';
import { KeyScheduler } from './key-scheduler.js';
import { RateLimiter } from './limiter.js';
import { decodeOffsetMap, encodeOffsetMap } from './offset-map.js';
import { type Job, type ResolvedWorkerOptions, resolveWorkerOptions, type WorkerOptions } from './options.js';
import { PartitionTracker } from './partition-tracker.js';
import { toWorkItem, tpKey, type WorkItem } from './work-item.js';

/** Events a worker emits (all synchronous; listeners must not throw). */
export interface WorkerEvents {
  'job:started': [job: Job<unknown>];
  'job:completed': [job: Job<unknown>, info: { durationMs: number }];
  'job:failed': [
    job: Job<unknown>,
    error: unknown,
    info: { next: 'in-place' | 'tier' | 'dlq' | 'abandoned'; attempt: number },
  ];
  'job:retried': [job: Job<unknown>, route: Route];
  'job:dead': [
    item: { topic: string; partition: number; offset: string; key: string | null; jobId: string },
    error: unknown,
  ];
  'job:duplicate': [job: Job<unknown>];
  rebalance: [assignment: { topic: string; partitions: number[] }[]];
  commit: [offsets: { topic: string; partition: number; offset: string }[]];
}

type State = 'new' | 'starting' | 'running' | 'stopping' | 'stopped';

interface OwnedPartition {
  tracker: PartitionTracker;
  /** Resolves once the previous owner's offset map (commit metadata) is loaded. */
  ready: Promise<void>;
  resumeTimer?: NodeJS.Timeout;
}

/** Sleeps `ms`, or less when `signal` aborts; the abort listener goes away with the timer. */
const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const onAbort = () => {
      clearTimeout(t);
      resolve();
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/** How long before its due time a retry-tier record is fetched and held (covers the fetch latency). */
const DUE_LEAD_MS = 300;

/** An object made on first property access (for per-job loggers that are rarely used). */
function lazy<T extends object>(make: () => T): T {
  let value: T | undefined;
  return new Proxy({} as T, {
    get: (_target, property) => {
      value ??= make();
      const member = (value as Record<PropertyKey, unknown>)[property];
      return typeof member === 'function' ? member.bind(value) : member;
    },
  });
}

/**
 * A handler attempt's abort signal, made only if the handler reads `ctx.signal` (most do not, and
 * an AbortController per job is a measurable cost at tens of thousands of jobs per second).
 */
class AttemptSignal {
  private controller: AbortController | undefined;
  private aborted = false;
  private reason: unknown;

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.controller?.abort(reason);
  }
}

/** A running job: its current attempt's signal, and why the worker stopped it (if it did). */
interface JobSlot {
  attempt?: AttemptSignal | undefined;
  stopReason?: unknown;
}

/** Why a job stopped without an outcome (it stays uncommitted and is redelivered). */
class Abandoned extends Error {}

/**
 * A consumer-group worker: per-key ordering with concurrency beyond the partition count, commits
 * only after each job (and every earlier one of its partition) reached an outcome, failure routing
 * through retry tiers to a DLQ, bounded memory, graceful shutdown and rebalances.
 */
export class Worker<T = Record<string, unknown>> extends EventEmitter<WorkerEvents> {
  readonly options: ResolvedWorkerOptions;
  readonly topics: TopicNames;
  readonly metrics: QueueMetrics;
  readonly logger: Logger;
  readonly workerId = `${hostname()}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

  private readonly connection: KafkaConnection;
  private readonly codec: AvroCodec;
  private readonly scheduler: KeyScheduler<WorkItem>;
  private readonly limiter: RateLimiter | undefined;
  private readonly store: IdempotencyStore | undefined;
  private consumer: Consumer | undefined;
  private producer: Producer | undefined;
  private admin: Admin | undefined;
  private router: OutcomeRouter | undefined;

  private state: State = 'new';
  private paused = false;
  private rebalancing = false;
  private joined = false;
  private seq = 0;
  private readonly owned = new Map<string, OwnedPartition>();
  /** Last commit per partition: `point` and the offset map sent with it. */
  private readonly lastCommitted = new Map<string, { point: number; metadata: string }>();
  private rebalanceCommitTimer: NodeJS.Timeout | undefined;
  private consumerRestartTimer: NodeJS.Timeout | undefined;
  /** Restarts of the consumer by the worker since the last group join (the backoff exponent). */
  private consumerRestarts = 0;
  private draining: Promise<void> | undefined;
  private readonly running = new Map<WorkItem, JobSlot>();
  /** Jobs waiting for their writer schema (registry down): they keep their key, not a concurrency slot. */
  private readonly parked = new Map<WorkItem, JobSlot>();
  /** Parked jobs ready to run again, in order: they get the next free slots before new jobs. */
  private readonly reentry: { item: WorkItem; slot: JobSlot; admit: () => void }[] = [];
  private bufferedJobs = 0;
  private bufferedBytes = 0;
  private roomWaiters: (() => void)[] = [];
  private commitTimer: NodeJS.Timeout | undefined;
  private limiterTimer: NodeJS.Timeout | undefined;
  private commitInFlight: Promise<void> | undefined;
  private commitQueued: { duringRebalance: boolean; promise: Promise<void> } | undefined;
  private readonly stopController = new AbortController();
  /** Accepted, unfinished items in acceptance order (the first is the oldest). */
  private readonly pending = new Map<WorkItem, true>();
  private lagTimer: NodeJS.Timeout | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private server: Server | undefined;
  private readonly desired: DesiredReplicas;
  /** The last lag reading (also exported as queue_depth_pending). */
  lastLag: PartitionLag[] = [];
  private readonly labels: { topic: string; group: string };
  /** Label-bound metric children for the per-job path (no label hashing per job). */
  private readonly counters: {
    completed: { inc(): void };
    retried: { inc(): void };
    dead: { inc(): void };
    duplicate: { inc(): void };
    processing: { observe(v: number): void };
    endToEnd: { observe(v: number): void };
  };

  constructor(options: WorkerOptions<T>) {
    super();
    // Every waiting job (backoff, registry, store) listens for stop: many at once is by design.
    setMaxListeners(0, this.stopController.signal);
    this.options = resolveWorkerOptions(options as WorkerOptions<never>);
    const o = this.options;
    this.logger = o.logger ?? createLogger({ name: 'strand-worker' });
    this.connection = { ...(o.kafka ?? { brokers: [] }) } as KafkaConnection;
    if (o.brokers) this.connection.brokers = o.brokers;
    this.topics = topicNames(o.topic, o.retry.tiers.length, o.dlqTopic ? { dlq: o.dlqTopic } : {});
    this.codec = new AvroCodec(
      new SchemaRegistryGateway(o.registry as never),
      o.readerSchema ? { readerSchema: o.readerSchema } : {},
    );
    this.scheduler = new KeyScheduler(o.ordering);
    this.limiter = o.limiter ? new RateLimiter(o.limiter.max, o.limiter.durationMs) : undefined;
    if (o.idempotency) {
      this.store = o.idempotency.store === 'memory' ? new MemoryIdempotencyStore() : o.idempotency.store;
    }
    this.metrics = new QueueMetrics();
    this.labels = { topic: o.topic, group: o.groupId };
    const outcome = (name: string) => this.metrics.jobs.labels({ ...this.labels, outcome: name });
    this.counters = {
      completed: outcome('completed'),
      retried: outcome('retried'),
      dead: outcome('dead_lettered'),
      duplicate: outcome('duplicate'),
      processing: this.metrics.processingLatency.labels(this.labels),
      endToEnd: this.metrics.endToEndLatency.labels(this.labels),
    };
    // Sampled when scraped, not per job.
    this.metrics.sampleOnScrape(this.metrics.inflight, () =>
      this.metrics.inflight.set(this.labels, this.running.size),
    );
    this.desired = new DesiredReplicas(o.autoscale);
  }

  /** Accepted jobs not yet finished, and their bytes. */
  get buffered(): { jobs: number; bytes: number } {
    return { jobs: this.bufferedJobs, bytes: this.bufferedBytes };
  }

  /** Jobs running now. */
  get inflight(): number {
    return this.running.size;
  }

  /** Joined the group and holding an assignment (possibly empty, by design). */
  get ready(): boolean {
    return this.state === 'running' && this.joined;
  }

  /** Partitions this worker owns now. */
  assignment(): { topic: string; partition: number }[] {
    return [...this.owned.values()].map((p) => ({ topic: p.tracker.topic, partition: p.tracker.partition }));
  }

  async start(): Promise<void> {
    if (this.state !== 'new') throw new StrandError('CONFIG', `worker already ${this.state}`);
    this.state = 'starting';
    const o = this.options;
    const kafka = createKafka(
      { clientId: `strand-${o.groupId}`, ...this.connection },
      kafkaLogSink(this.logger),
    );
    this.admin = kafka.admin();
    try {
      await this.admin.connect();
    } catch (error) {
      this.state = 'new';
      throw explainConnectError(error, this.connection);
    }
    const subscribed = [this.topics.main, ...this.topics.tiers];
    const existing = new Set(await this.admin.listTopics());
    const missing = [...subscribed, this.topics.dlq].filter((t) => !existing.has(t));
    if (missing.length > 0) {
      await this.admin.disconnect();
      this.state = 'new';
      throw new StrandError(
        'KAFKA',
        `topic(s) ${missing.join(', ')} do not exist; create them with "strand topics create ${o.topic} --retry-tiers ${o.retry.tiers.map((d: number) => `${d}ms`).join(',') || '""'}"`,
      );
    }
    this.producer = kafka.producer({
      // Every record gets an explicit partition (sendAcknowledged); this only silences kafkajs' v2 notice.
      createPartitioner: Partitioners.DefaultPartitioner,
      idempotent: true,
      maxInFlightRequests: 5,
      allowAutoTopicCreation: false,
      retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 100, maxRetryTime: 5000 },
    });
    await this.producer.connect();
    this.router = new OutcomeRouter(
      this.producer,
      this.topics,
      o.retry.tiers,
      o.groupId,
      partitionCounts(this.admin),
      (partitions) =>
        this.logger.warn({ partitions }, 'partitions missing from the produce answer; sending them again'),
    );
    if (o.metrics) {
      // Up before the group join, so /readyz can say "not yet" and /healthz answers throughout.
      this.server = await startMetricsServer({
        port: o.metrics.port,
        host: o.metrics.host,
        registry: this.metrics.registry,
        ready: () => this.ready,
      });
    }
    this.consumer = kafka.consumer({
      groupId: o.groupId,
      sessionTimeout: o.sessionTimeoutMs,
      heartbeatInterval: o.heartbeatIntervalMs,
      rebalanceTimeout: Math.max(60_000, o.rebalanceTimeoutMs),
      allowAutoTopicCreation: false,
      // Fetched-but-unaccepted records are memory too: keep fetches small next to the job buffer.
      maxBytesPerPartition: 512 * 1024,
      maxBytes: 4 * 1024 * 1024,
      // A resumed retry-tier partition is fetched only when the current long poll returns: keep it short.
      maxWaitTimeInMs: 200,
      retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 2000 },
    });
    const ev = this.consumer.events;
    this.consumer.on(ev.REBALANCING, () => this.onRebalancing());
    this.consumer.on(ev.GROUP_JOIN, (e) => this.onGroupJoin(e.payload.memberAssignment));
    this.consumer.on(ev.CRASH, (e) => this.onConsumerCrash(e.payload.error, e.payload.restart));
    await this.consumer.connect();
    await this.consumer.subscribe({ topics: subscribed, fromBeginning: o.fromBeginning });
    await this.runConsumer();
    this.commitTimer = setInterval(() => void this.commit(), o.commitIntervalMs);
    this.commitTimer.unref();
    this.heartbeatTimer = setInterval(() => this.beat(), 1000);
    this.heartbeatTimer.unref();
    this.beat();
    this.lagTimer = setInterval(() => void this.refreshLag(), o.lagIntervalMs);
    this.lagTimer.unref();
    this.state = 'running';
    void this.refreshLag();
    this.logger.info(
      {
        topic: o.topic,
        group: o.groupId,
        worker: this.workerId,
        concurrency: o.concurrency,
        ordering: o.ordering,
      },
      'worker started',
    );
  }

  private runConsumer(): Promise<void> {
    return this.consumer!.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.options.partitionsConsumedConcurrently,
      eachBatch: (payload) => this.intake(payload),
    });
  }

  /**
   * kafkajs has left the group when it reports a crash, so every partition is lost: waiting jobs are
   * dropped, running ones finish uncommitted (the next owner, maybe us again, redoes them). Keeping
   * the trackers would let a partition that another member moved forward meanwhile be committed
   * backwards when it comes back. kafkajs restarts itself after retriable faults; after the others
   * (an UNKNOWN server error, or a TypeError of its own) it would stay down for good, leaving a
   * live worker that takes no work, so the worker restarts it, with backoff.
   */
  private onConsumerCrash(error: Error, restart: boolean): void {
    this.joined = false;
    for (const tp of [...this.owned.keys()]) this.revoke(tp);
    this.rebalancing = false;
    if (this.state !== 'running') return;
    if (restart) {
      this.logger.warn({ err: error }, 'consumer crashed; kafkajs restarts it');
      return;
    }
    const delayMs = backoffDelay({ baseMs: 1000, maxMs: 30_000, jitter: 0.2 }, this.consumerRestarts++);
    this.logger.error(
      { err: error, restartInMs: Math.round(delayMs) },
      'consumer crashed and kafkajs will not restart it; the worker restarts it',
    );
    this.metrics.consumerRestarts.inc({ group: this.options.groupId });
    clearTimeout(this.consumerRestartTimer);
    this.consumerRestartTimer = setTimeout(() => {
      if (this.state !== 'running' || !this.consumer) return;
      // A failed join inside run() reports another crash, which schedules the next attempt.
      this.consumer
        .connect()
        .then(() => this.runConsumer())
        .catch((err: unknown) => this.onConsumerCrash(err as Error, false));
    }, delayMs);
    // Not unref'd: while the consumer is down this timer may be all that keeps the process alive.
  }

  /** Port of the metrics server (useful with `metrics: { port: 0 }`). */
  get metricsPort(): number | undefined {
    const address = this.server?.address();
    return typeof address === 'object' && address ? address.port : undefined;
  }

  private beat(): void {
    this.metrics.heartbeat.set({ worker: this.workerId }, Date.now() / 1000);
    const oldest = this.pending.keys().next().value;
    this.metrics.oldestPendingAge.set(this.labels, oldest ? (Date.now() - oldest.acceptedAt) / 1000 : 0);
  }

  /** Reads lag, DLQ depth and the desired replica count from the broker. */
  async refreshLag(): Promise<PartitionLag[]> {
    if (!this.admin) return this.lastLag;
    try {
      const lag = await computeLag(this.admin, this.options.groupId, [
        this.topics.main,
        ...this.topics.tiers,
      ]);
      this.metrics.depthPending.reset();
      for (const l of lag)
        this.metrics.depthPending.set(
          { topic: l.topic, partition: String(l.partition), group: this.options.groupId },
          l.lag,
        );
      const total = lag.reduce((sum, l) => sum + l.lag, 0);
      this.metrics.desiredReplicas.set({ group: this.options.groupId }, this.desired.update(total));
      this.metrics.dlqDepth.set(this.labels, await dlqDepth(this.admin, this.topics.main, this.topics.dlq));
      this.lastLag = lag;
    } catch (error) {
      this.logger.warn({ err: error }, 'lag refresh failed');
    }
    return this.lastLag;
  }

  // ---- intake -------------------------------------------------------------------------------

  private tierOf(topic: string): number {
    return topic === this.topics.main ? 0 : this.topics.tiers.indexOf(topic) + 1;
  }

  private hasRoom(): boolean {
    return (
      this.bufferedJobs < this.options.maxBufferedJobs && this.bufferedBytes < this.options.maxBufferedBytes
    );
  }

  private waitForRoom(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        resolve();
      }
      this.roomWaiters.push(done);
    });
  }

  private wakeIntake(): void {
    const waiters = this.roomWaiters;
    this.roomWaiters = [];
    for (const w of waiters) w();
  }

  /**
   * The group is rebalancing and this member has not rejoined yet, so the old generation (and our
   * ownership) still holds: stop starting jobs, let running ones finish (up to rebalanceTimeoutMs)
   * and commit them, so the next owner of a revoked partition does not run them again. Delaying
   * our JoinGroup is how the Java client's onPartitionsRevoked works; kafkajs has no such hook, so
   * the intake does it where the rebalance error reaches it.
   */
  private drainForRebalance(): Promise<void> {
    this.draining ??= (async () => {
      this.rebalancing = true;
      const deadline = Date.now() + this.options.rebalanceTimeoutMs;
      while (this.running.size > 0 && Date.now() < deadline && this.state === 'running') await sleep(10);
      // A commit stuck on a coordinator that is moving must not keep us from rejoining: past the
      // budget, rejoin uncommitted (the next owner redoes those jobs; the idempotency store, if
      // any, suppresses their side effects).
      const budgetMs = Math.max(5000, deadline - Date.now());
      const timer = new AbortController();
      const committed = await Promise.race([
        this.commit({ duringRebalance: true }).then(() => true),
        sleep(budgetMs, timer.signal).then(() => false),
      ]);
      timer.abort();
      if (committed)
        this.logger.info(
          { stillRunning: this.running.size },
          'group rebalancing: finished and committed in-flight jobs before rejoining',
        );
      else
        this.logger.warn(
          { stillRunning: this.running.size, budgetMs },
          'group rebalancing: the commit did not finish in time; rejoining without it',
        );
    })().finally(() => {
      this.draining = undefined;
    });
    return this.draining;
  }

  private async intake(payload: EachBatchPayload): Promise<void> {
    const { batch, resolveOffset, isRunning, isStale, pause } = payload;
    const heartbeat = async () => {
      try {
        await payload.heartbeat();
      } catch (error) {
        if ((error as { type?: string }).type === 'REBALANCE_IN_PROGRESS') await this.drainForRebalance();
        throw error;
      }
    };
    const tp = tpKey(batch.topic, batch.partition);
    const tier = this.tierOf(batch.topic);
    let owned = this.owned.get(tp);
    if (!owned) {
      owned = { tracker: new PartitionTracker(batch.topic, batch.partition), ready: Promise.resolve() };
      this.owned.set(tp, owned);
    }
    await owned.ready;
    const tracker = owned.tracker;
    for (const message of batch.messages) {
      if (!isRunning() || isStale() || this.state !== 'running' || this.owned.get(tp)?.tracker !== tracker)
        return;
      const offset = Number(message.offset);
      if (tracker.seen(offset)) {
        resolveOffset(message.offset);
        continue;
      }
      if (tracker.preloadedDone.delete(offset)) {
        // The previous owner finished it out of order (offset map): done, without running again.
        tracker.accept(offset);
        tracker.complete(offset);
        resolveOffset(message.offset);
        continue;
      }
      let holdMs = 0;
      if (tier > 0) {
        const dueAt = Number(message.headers?.[HEADERS.dueAt]?.toString() ?? '0');
        const wait = dueAt - Date.now();
        if (wait > DUE_LEAD_MS) {
          // Not due: pause this tier partition and fetch it again from this offset shortly before
          // it is due (the lead covers the fetch round trip), instead of holding it in memory.
          const resume = pause();
          clearTimeout(owned.resumeTimer);
          owned.resumeTimer = setTimeout(() => {
            if (this.owned.get(tp)?.tracker === tracker) resume();
          }, wait - DUE_LEAD_MS);
          owned.resumeTimer.unref();
          return;
        }
        holdMs = wait;
      }
      while (!this.hasRoom()) {
        await this.waitForRoom(1000);
        if (!isRunning() || isStale() || this.state !== 'running') return;
        // Throws the rebalance error when the group rebalances, so kafkajs can rejoin.
        await heartbeat();
      }
      const item = toWorkItem(batch.topic, batch.partition, message, tier, tracker, this.seq++);
      tracker.accept(offset);
      this.bufferedJobs++;
      this.bufferedBytes += item.size;
      this.pending.set(item, true);
      if (holdMs > 1) {
        // Due within the lead: accepted now (counted, buffered), started on time.
        setTimeout(() => {
          if (!this.owns(item) || this.state !== 'running') return this.release(item);
          this.scheduler.add(item);
          this.pump();
        }, holdMs).unref();
      } else {
        this.scheduler.add(item);
      }
      resolveOffset(message.offset);
      this.pump();
    }
    // kafkajs heartbeats right after this batch; doing it here first lets a rebalance be drained.
    await heartbeat();
  }

  private onRebalancing(): void {
    this.rebalancing = true;
    // The old generation is still valid until the group finishes joining: commit what is done now.
    void this.commit({ duringRebalance: true });
  }

  private onGroupJoin(memberAssignment: Record<string, number[]>): void {
    const next = new Set<string>();
    for (const [topic, partitions] of Object.entries(memberAssignment))
      for (const p of partitions) next.add(tpKey(topic, p));
    for (const tp of [...this.owned.keys()]) if (!next.has(tp)) this.revoke(tp);
    const fresh: PartitionTracker[] = [];
    for (const tp of next) {
      if (!this.owned.has(tp)) {
        const i = tp.lastIndexOf(':');
        const tracker = new PartitionTracker(tp.slice(0, i), Number(tp.slice(i + 1)));
        fresh.push(tracker);
        this.owned.set(tp, { tracker, ready: Promise.resolve() });
      }
    }
    if (fresh.length > 0) {
      const ready = this.loadOffsetMaps(fresh);
      for (const t of fresh) this.owned.get(tpKey(t.topic, t.partition))!.ready = ready;
    }
    this.rebalancing = false;
    this.joined = true;
    this.consumerRestarts = 0;
    this.metrics.rebalances.inc({ group: this.options.groupId });
    const assignment = Object.entries(memberAssignment).map(([topic, partitions]) => ({ topic, partitions }));
    this.logger.info({ assignment }, 'assignment received');
    this.emit('rebalance', assignment);
    this.pump();
  }

  /** Revoked: its waiting jobs are dropped; running ones finish but cannot be committed by us. */
  private revoke(tp: string): void {
    const owned = this.owned.get(tp);
    if (!owned) return;
    clearTimeout(owned.resumeTimer);
    const dropped = this.scheduler.dropPartition(tp);
    for (const item of dropped) this.release(item);
    this.owned.delete(tp);
    this.lastCommitted.delete(tp);
    this.logger.info({ tp, dropped: dropped.length }, 'partition revoked');
  }

  /** Reads the committed offset maps of newly assigned partitions (best effort: a failure only costs re-runs). */
  private async loadOffsetMaps(trackers: PartitionTracker[]): Promise<void> {
    const topics = [...new Set(trackers.map((t) => t.topic))];
    try {
      const res = await this.admin!.fetchOffsets({ groupId: this.options.groupId, topics });
      for (const { topic, partitions } of res) {
        for (const p of partitions) {
          const tracker = trackers.find((t) => t.topic === topic && t.partition === p.partition);
          const point = Number(p.offset);
          if (!tracker || point < 0 || !p.metadata) continue;
          tracker.preloadedDone = decodeOffsetMap(point, p.metadata);
        }
      }
    } catch (error) {
      this.logger.warn(
        { err: error },
        'could not read committed offset maps; out-of-order completions may run again',
      );
    }
  }

  // ---- commits ------------------------------------------------------------------------------

  /**
   * Commits each owned partition's commit point that moved forward; never backwards. One commit is
   * in flight at a time and at most one waits behind it (it reads the commit points when it starts,
   * so it covers every request made meanwhile): slow commits while a coordinator moves cannot pile
   * up a queue that a rebalance's commit would wait behind.
   */
  commit(opts: { duringRebalance?: boolean } = {}): Promise<void> {
    const duringRebalance = opts.duringRebalance === true;
    if (!this.commitInFlight) return this.startCommit(duringRebalance);
    if (this.commitQueued) {
      this.commitQueued.duringRebalance ||= duringRebalance;
      return this.commitQueued.promise;
    }
    const queued = { duringRebalance, promise: Promise.resolve() };
    queued.promise = this.commitInFlight
      .catch(() => undefined)
      .then(() => {
        this.commitQueued = undefined;
        return this.startCommit(queued.duringRebalance);
      });
    this.commitQueued = queued;
    return queued.promise;
  }

  private startCommit(duringRebalance: boolean): Promise<void> {
    const inFlight = this.commitOnce(duringRebalance).finally(() => {
      if (this.commitInFlight === inFlight) this.commitInFlight = undefined;
    });
    this.commitInFlight = inFlight;
    return inFlight;
  }

  private async commitOnce(duringRebalance: boolean): Promise<void> {
    const consumer = this.consumer;
    if (!consumer || (this.rebalancing && !duringRebalance)) return;
    const offsets: { topic: string; partition: number; offset: string; metadata: string }[] = [];
    for (const [tp, { tracker }] of this.owned) {
      const point = tracker.commitPoint();
      if (point === undefined) continue;
      const last = this.lastCommitted.get(tp);
      if (last && point < last.point) continue;
      const metadata = encodeOffsetMap(point, tracker.doneAbove());
      if (last && point === last.point && metadata === last.metadata) continue;
      offsets.push({ topic: tracker.topic, partition: tracker.partition, offset: String(point), metadata });
    }
    if (offsets.length === 0) return;
    try {
      await consumer.commitOffsets(offsets);
      for (const o of offsets) {
        const tp = tpKey(o.topic, o.partition);
        // Only record it if we still own the partition (the commit itself was filtered above).
        if (this.owned.has(tp)) this.lastCommitted.set(tp, { point: Number(o.offset), metadata: o.metadata });
      }
      this.emit(
        'commit',
        offsets.map(({ topic, partition, offset }) => ({ topic, partition, offset })),
      );
    } catch (error) {
      this.logger.warn({ err: error, offsets }, 'offset commit failed; it is retried at the next interval');
    }
  }

  // ---- dispatch -----------------------------------------------------------------------------

  private pump(): void {
    // While the group rebalances no job starts: in-flight ones finish and are committed with the
    // old generation, so the next owner does not run them again.
    if (this.state !== 'running' || this.paused || this.rebalancing) return;
    this.admitParked();
    while (
      this.running.size < this.options.concurrency &&
      this.reentry.length === 0 &&
      this.scheduler.hasRunnable
    ) {
      if (this.limiter && !this.limiter.tryTake()) {
        if (!this.limiterTimer) {
          this.limiterTimer = setTimeout(() => {
            this.limiterTimer = undefined;
            this.pump();
          }, this.limiter.msUntilNext());
        }
        return;
      }
      const item = this.scheduler.nextRunnable();
      if (!item) return;
      const slot: JobSlot = {};
      this.running.set(item, slot);
      void this.execute(item, slot);
    }
  }

  private release(item: WorkItem): void {
    this.pending.delete(item);
    this.bufferedJobs--;
    this.bufferedBytes -= item.size;
    this.wakeIntake();
  }

  private owns(item: WorkItem): boolean {
    return this.owned.get(item.tp)?.tracker === item.tracker;
  }

  private async execute(item: WorkItem, slot: JobSlot): Promise<void> {
    // Most jobs never log: the child logger is made on first use.
    const log = lazy(() =>
      this.logger.child({
        topic: item.topic,
        partition: item.partition,
        offset: item.offset,
        key: item.key,
        jobId: item.jobId,
        attempt: item.attempt,
      }),
    );
    try {
      const done = await this.process(item, slot, log);
      if (done && this.owns(item)) {
        item.tracker.complete(Number(item.offset));
        if (this.rebalancing && !this.rebalanceCommitTimer) {
          this.rebalanceCommitTimer = setTimeout(() => {
            this.rebalanceCommitTimer = undefined;
            if (this.rebalancing) void this.commit({ duringRebalance: true });
          }, 50);
        }
      }
    } catch (error) {
      if (!(error instanceof Abandoned))
        log.error({ err: error }, 'job ended without an outcome; it stays uncommitted');
    } finally {
      this.running.delete(item);
      this.parked.delete(item);
      this.scheduler.finish(item);
      this.release(item);
      this.pump();
    }
  }

  /** Waits while the worker runs and owns the item; throws `Abandoned` when it no longer should continue. */
  private async retryWait(item: WorkItem, ms: number): Promise<void> {
    await sleep(ms, this.stopController.signal);
    if (this.state !== 'running' || !this.owns(item)) throw new Abandoned();
  }

  /**
   * Decodes the record. While its writer schema cannot be fetched (registry down), the job waits
   * without holding a concurrency slot — it keeps its key, so order holds, and jobs of other keys
   * whose schemas are cached keep running — then takes a slot again before its handler runs.
   */
  private async decode(item: WorkItem, log: Logger): Promise<unknown> {
    const park = () => {
      const slot = this.running.get(item);
      if (!slot) return;
      this.running.delete(item);
      this.parked.set(item, slot);
      // Not from here: the dispatcher may be what started this job; it will see the free slot.
      queueMicrotask(() => this.pump());
    };
    // A schema not in memory means a registry call, which may take the registry's whole retry
    // budget when it is down: the job gives its slot up for that time.
    if (!this.codec.decodesLocally(item.value)) park();
    let data: unknown;
    for (let attempt = 0; ; attempt++) {
      try {
        data = (await this.codec.decode(item.value)).data;
        break;
      } catch (error) {
        if (error instanceof DecodeError) throw error;
        const reason = error instanceof RegistryUnavailableError ? 'registry unavailable' : 'decode failed';
        if (attempt % 10 === 0)
          log.warn({ err: error }, `${reason}; the job waits and retries (not dead-lettered)`);
        park();
        await this.retryWait(item, backoffDelay({ baseMs: 500, maxMs: 10_000, jitter: 0.2 }, attempt));
      }
    }
    const slot = this.parked.get(item);
    if (slot) {
      await new Promise<void>((admit) => {
        this.reentry.push({ item, slot, admit });
        this.admitParked();
      });
      if (this.state !== 'running' || !this.owns(item)) throw new Abandoned();
    }
    return data;
  }

  /** Gives free slots to parked jobs that are ready again, oldest first. */
  private admitParked(): void {
    // Same rule as for new jobs: nothing starts while paused or while the group rebalances.
    if (this.state !== 'running' || this.paused || this.rebalancing) return;
    while (this.reentry.length > 0 && this.running.size < this.options.concurrency) {
      const next = this.reentry.shift()!;
      this.parked.delete(next.item);
      this.running.set(next.item, next.slot);
      next.admit();
    }
  }

  /** Takes the idempotency lease; 'completed' means a duplicate. Fails closed while the store is down. */
  private async acquire(
    item: WorkItem,
    job: Job<unknown>,
    log: Logger,
  ): Promise<'acquired' | 'completed' | 'none'> {
    const idem = this.options.idempotency;
    if (!this.store || !idem) return 'none';
    const id = this.idemKey(item, job);
    for (let attempt = 0; ; attempt++) {
      try {
        const result = await this.store.begin(id, this.leaseOwner(item), idem.leaseMs);
        if (result !== 'busy') return result;
        if (attempt % 20 === 0)
          log.info({ idempotencyKey: id }, 'job id is leased by another worker; waiting');
        await this.retryWait(item, Math.min(idem.leaseMs / 4, 250 * 2 ** Math.min(attempt, 4)));
      } catch (error) {
        if (error instanceof Abandoned) throw error;
        if (attempt % 10 === 0)
          log.warn({ err: error }, 'idempotency store unavailable; the job waits (fail closed)');
        this.metrics.failures.inc({ ...this.labels, error_class: 'StoreUnavailable' });
        await this.retryWait(item, backoffDelay({ baseMs: 200, maxMs: 5000, jitter: 0.2 }, attempt));
      }
    }
  }

  /**
   * The lease owner is this worker *and* this record: two records with one job id (a duplicate
   * enqueue) must not both hold the lease, even inside one worker.
   */
  private leaseOwner(item: WorkItem): string {
    return `${this.workerId}/${item.tp}/${item.offset}`;
  }

  private idemKey(item: WorkItem, job: Job<unknown>): string {
    const idem = this.options.idempotency;
    return idem?.key ? idem.key(job as never) : item.jobId;
  }

  private classify(error: unknown): FailureKind {
    return this.options.classify?.(error) ?? defaultClassify(error);
  }

  /** Runs the item to an outcome. Returns true when its offset may count as done. */
  private async process(item: WorkItem, slot: JobSlot, log: Logger): Promise<boolean> {
    const o = this.options;
    let data: unknown;
    try {
      data = await this.decode(item, log);
    } catch (error) {
      if (!(error instanceof DecodeError)) throw error;
      log.warn(
        { reason: error.reason, bytes: error.byteLength, schemaId: error.schemaId },
        `undecodable record: ${error.message}`,
      );
      this.metrics.failures.inc({ ...this.labels, error_class: 'DecodeError' });
      await this.route(item, error, log, () => this.router!.toDlq(item, error, item.attempt));
      this.counters.dead.inc();
      this.emit('job:dead', item, error);
      return true;
    }

    let attempt = item.attempt;
    let inPlaceLeft = o.retry.inPlace;
    let inPlaceDone = 0;
    for (;;) {
      const job: Job<unknown> = {
        id: item.jobId,
        key: item.key,
        data,
        attempt,
        headers: item.headers,
        topic: item.topic,
        partition: item.partition,
        offset: item.offset,
        enqueuedAt: item.headers[HEADERS.enqueuedAt] ? Number(item.headers[HEADERS.enqueuedAt]) : undefined,
      };
      const lease = await this.acquire(item, job, log);
      if (lease === 'completed') {
        this.counters.duplicate.inc();
        log.info('duplicate job id: handler skipped');
        this.emit('job:duplicate', job);
        return true;
      }
      this.emit('job:started', job);
      const started = performance.now();
      const renewal = lease === 'acquired' ? this.renewLease(item, job, log) : undefined;
      const error = await this.runHandler(
        job,
        slot,
        attempt === item.attempt ? log : log.child({ attempt }),
      ).finally(() => clearInterval(renewal));
      const seconds = (performance.now() - started) / 1000;
      this.counters.processing.observe(seconds);
      if (error === undefined) {
        if (lease === 'acquired') await this.finishLease(item, job, log);
        this.counters.completed.inc();
        if (job.enqueuedAt) this.counters.endToEnd.observe(Math.max(0, Date.now() - job.enqueuedAt) / 1000);
        this.emit('job:completed', job, { durationMs: seconds * 1000 });
        return true;
      }
      if (lease === 'acquired')
        await this.store!.release(this.idemKey(item, job), this.leaseOwner(item)).catch(() => undefined);
      if (this.state !== 'running' && this.stopController.signal.aborted) {
        this.emit('job:failed', job, error, { next: 'abandoned', attempt });
        throw new Abandoned();
      }
      const kind = this.classify(error);
      const errorClass = errorClassName(error);
      this.metrics.failures.inc({ ...this.labels, error_class: errorClass });
      if (kind === 'retry-later' && this.router!.hasTiers) {
        const delayMs = (error as { delayMs?: number }).delayMs ?? 0;
        const tier = this.router!.tierForDelay(delayMs);
        this.emit('job:failed', job, error, { next: 'tier', attempt });
        const route = await this.route(item, error, log, () =>
          this.router!.toTier(item, error, { tier, nextAttempt: attempt, delayMs }),
        );
        this.metrics.retries.inc({ ...this.labels, tier: String(tier) });
        this.counters.retried.inc();
        this.emit('job:retried', job, route);
        return true;
      }
      const exhausted = attempt >= o.retry.maxAttempts;
      if (kind === 'non-retriable' || exhausted) {
        log.warn({ err: error, errorClass, exhausted }, 'job failed; sending it to the dead-letter topic');
        this.emit('job:failed', job, error, { next: 'dlq', attempt });
        await this.route(item, error, log, () => this.router!.toDlq(item, error, attempt));
        this.counters.dead.inc();
        this.emit('job:dead', item, error);
        return true;
      }
      const inPlace = inPlaceLeft > 0 || !this.router!.hasTiers;
      if (inPlace) {
        this.emit('job:failed', job, error, { next: 'in-place', attempt });
        const delay =
          kind === 'retry-later'
            ? ((error as { delayMs?: number }).delayMs ?? 0)
            : backoffDelay(o.retry.inPlaceBackoff, inPlaceDone);
        log.info({ err: error, delayMs: delay }, 'job failed; retrying in place');
        inPlaceLeft--;
        inPlaceDone++;
        await this.retryWait(item, delay);
        attempt++;
        continue;
      }
      const tier = this.router!.nextTier(item);
      this.emit('job:failed', job, error, { next: 'tier', attempt });
      log.info({ err: error, tier }, 'job failed; sending it to a retry tier');
      const route = await this.route(item, error, log, () =>
        this.router!.toTier(item, error, { tier, nextAttempt: attempt + 1 }),
      );
      this.metrics.retries.inc({ ...this.labels, tier: String(tier) });
      this.counters.retried.inc();
      this.emit('job:retried', job, route);
      return true;
    }
  }

  /** Keeps the idempotency lease alive while the handler runs (every third of the lease). */
  private renewLease(item: WorkItem, job: Job<unknown>, log: Logger): NodeJS.Timeout {
    const idem = this.options.idempotency!;
    const id = this.idemKey(item, job);
    const timer = setInterval(
      () => {
        this.store!.renew(id, this.leaseOwner(item), idem.leaseMs).then(
          (held) => {
            if (!held)
              log.warn(
                { idempotencyKey: id },
                'idempotency lease lost while the job ran (it outlived leaseMs?)',
              );
          },
          (error: unknown) => log.warn({ err: error }, 'could not renew the idempotency lease'),
        );
      },
      Math.max(50, Math.floor(idem.leaseMs / 3)),
    );
    timer.unref();
    return timer;
  }

  private async finishLease(item: WorkItem, job: Job<unknown>, log: Logger): Promise<void> {
    const idem = this.options.idempotency!;
    const id = this.idemKey(item, job);
    for (let attempt = 0; ; attempt++) {
      try {
        await this.store!.complete(id, this.leaseOwner(item), idem.retainMs);
        return;
      } catch (error) {
        if (attempt % 10 === 0)
          log.warn({ err: error }, 'could not mark the job done in the idempotency store; retrying');
        // The side effect happened: keep trying (the lease still blocks other holders meanwhile).
        if (this.state !== 'running' && attempt > 5) throw new Abandoned();
        await sleep(backoffDelay({ baseMs: 200, maxMs: 5000, jitter: 0.2 }, attempt));
      }
    }
  }

  /** Sends to a tier or the DLQ, retrying the send until acknowledged (or the worker stops). */
  private async route(
    item: WorkItem,
    error: unknown,
    log: Logger,
    send: () => Promise<Route>,
  ): Promise<Route> {
    // A revoked partition's job is redone by its new owner; routing it too would duplicate the retry.
    if (!this.owns(item)) throw new Abandoned();
    for (let attempt = 0; ; attempt++) {
      try {
        return await send();
      } catch (sendError) {
        log.warn(
          { err: sendError, original: errorClassName(error) },
          'could not publish the failed job; retrying',
        );
        await this.retryWait(item, backoffDelay({ baseMs: 200, maxMs: 5000, jitter: 0.2 }, attempt));
      }
    }
  }

  private async runHandler(job: Job<unknown>, slot: JobSlot, log: Logger): Promise<unknown> {
    const timeoutMs = this.options.jobTimeoutMs;
    const attempt = new AttemptSignal();
    slot.attempt = attempt;
    if (slot.stopReason !== undefined) attempt.abort(slot.stopReason);
    let timedOut = false;
    const timer =
      timeoutMs > 0
        ? setTimeout(() => {
            timedOut = true;
            attempt.abort(new JobTimeoutError(timeoutMs));
          }, timeoutMs)
        : undefined;
    const ctx = {
      get signal() {
        return attempt.signal;
      },
      logger: log,
    };
    try {
      await this.options.handler(job as never, ctx);
      return timedOut ? new JobTimeoutError(timeoutMs) : undefined;
    } catch (error) {
      return timedOut
        ? new JobTimeoutError(timeoutMs)
        : (error ?? new Error('handler threw a nullish value'));
    } finally {
      clearTimeout(timer);
      slot.attempt = undefined;
    }
  }

  // ---- lifecycle ----------------------------------------------------------------------------

  /** Stops starting jobs and pauses fetching; running jobs finish. */
  pause(): void {
    this.paused = true;
    this.consumer?.pause([this.topics.main, ...this.topics.tiers].map((topic) => ({ topic })));
  }

  resume(): void {
    this.paused = false;
    this.consumer?.resume([this.topics.main, ...this.topics.tiers].map((topic) => ({ topic })));
    this.pump();
  }

  /**
   * Graceful stop: no new jobs; running jobs get `timeoutMs` (default `shutdownTimeoutMs`) before
   * their signals abort; then the final commit, and the consumer leaves the group.
   */
  async stop(opts: { timeoutMs?: number } = {}): Promise<void> {
    if (this.state === 'stopped' || this.state === 'stopping') return;
    if (this.state === 'new') {
      this.state = 'stopped';
      return;
    }
    this.state = 'stopping';
    this.wakeIntake();
    clearInterval(this.commitTimer);
    clearInterval(this.lagTimer);
    clearInterval(this.heartbeatTimer);
    clearTimeout(this.limiterTimer);
    clearTimeout(this.rebalanceCommitTimer);
    clearTimeout(this.consumerRestartTimer);
    for (const owned of this.owned.values()) clearTimeout(owned.resumeTimer);
    this.consumer?.pause([this.topics.main, ...this.topics.tiers].map((topic) => ({ topic })));
    const budget = opts.timeoutMs ?? this.options.shutdownTimeoutMs;
    const deadline = Date.now() + budget;
    while (this.running.size > 0 && Date.now() < deadline) await sleep(20);
    if (this.running.size > 0) {
      this.logger.warn({ running: this.running.size }, 'shutdown budget spent; aborting running jobs');
      for (const slot of this.running.values()) {
        slot.stopReason = new StrandError('JOB_TIMEOUT', 'worker is shutting down');
        slot.attempt?.abort(slot.stopReason);
      }
      this.stopController.abort();
      const grace = Date.now() + 5000;
      while (this.running.size > 0 && Date.now() < grace) await sleep(20);
    }
    this.stopController.abort();
    // Parked jobs waiting for a slot end without running (uncommitted, redelivered later).
    for (const waiting of this.reentry.splice(0)) waiting.admit();
    this.rebalancing = false;
    await this.commit();
    await this.consumer
      ?.disconnect()
      .catch((e: unknown) => this.logger.warn({ err: e }, 'consumer disconnect failed'));
    await this.producer?.disconnect().catch(() => undefined);
    await this.admin?.disconnect().catch(() => undefined);
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.state = 'stopped';
    this.joined = false;
    this.logger.info({ worker: this.workerId }, 'worker stopped');
  }
}
