import { setMaxListeners } from 'node:events';
import { StrandError } from '../errors.js';
import { BatchedSender, OutcomeRouter } from '../failure/router.js';
import type { IdempotencyStore } from '../idempotency/store.js';
import type { Logger } from '../observability/logger.js';
import type { QueueMetrics } from '../observability/metrics.js';
import type {
  ConsumerPort,
  JobDecoder,
  ParkingPort,
  ProducePort,
  RecordReadPort,
  TransactionPort,
} from '../ports.js';
import { type Clock, every, sleep } from '../timing/clock.js';
import type { DelayBucket } from '../topology/delays.js';
import type { TopicNames } from '../topology/topics.js';
import { Assignment } from './assignment.js';
import { Committer } from './committer.js';
import { DelayForwarder } from './delays.js';
import { Dispatcher } from './dispatcher.js';
import { DueQueue } from './due-queue.js';
import { WorkerEmitter, type WorkerEvents } from './events.js';
import { Executor } from './executor.js';
import { Fairness } from './fairness/fairness.js';
import type { HandlerDeps } from './handler-call.js';
import { Intake } from './intake.js';
import { JobBuffer } from './job-buffer.js';
import { LeaseKeeper } from './lease.js';
import { Membership } from './membership.js';
import { DEFAULT_METADATA_MAX_CHARS } from './offset-map.js';
import { defaultBatchOptions, type ResolvedWorkerOptions } from './options.js';
import { KeyParking } from './parked-keys.js';
import { exactlyOnceRounds, TransactionRounds } from './rounds.js';
import { RunState } from './run-state.js';
import type { WorkItem } from './work-item.js';

export type { WorkerEvents };

/** What the core is built from: the ports, the options and the clock. */
export interface CoreDeps {
  readonly options: ResolvedWorkerOptions;
  readonly topics: TopicNames;
  readonly consumer: ConsumerPort;
  readonly producer: ProducePort;
  /** Exactly-once rounds (`exactlyOnce`): one transaction per input partition and round. */
  readonly transactions?: TransactionPort | undefined;
  /** The parking topic (strict key order); without it, keys are not parked. */
  readonly parking?: ParkingPort | undefined;
  readonly decoder: JobDecoder;
  readonly reader?: RecordReadPort | undefined;
  readonly store?: IdempotencyStore | undefined;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics: QueueMetrics;
  readonly workerId: string;
  /** Longest offset-map metadata in characters. @defaultValue 4000 (Kafka allows 4096 bytes) */
  readonly metadataMaxChars?: number;
  readonly random?: () => number;
  /** A batch of a topic this worker does not consume arrived (another member subscribes to it). */
  readonly unknownTopic?: (topic: string) => void;
  /** The producer for a `ctx.enqueue({ topic, schema })` target; without it that form throws. */
  readonly followUps?: HandlerDeps['followUps'];
}

/**
 * The worker's core, wired from its parts (docs/architecture.md): intake → dispatcher → executor,
 * with the assignment, the committer and the group hooks (drain before rejoin, assignment, crash
 * and restart). It talks to Kafka only through the ports, so the same code runs on kafkajs and in
 * the deterministic simulation (test/sim).
 */
export class WorkerCore extends WorkerEmitter {
  readonly state = new RunState((state) => this.emit('state', state));
  private readonly assignment: Assignment;
  private readonly buffer: JobBuffer;
  private readonly dispatcher: Dispatcher;
  private readonly intake: Intake;
  private readonly committer: Committer;
  private readonly delays: DelayForwarder;
  private readonly due: DueQueue;
  /** The delay bucket topics consumed now (buckets created while the worker runs are added). */
  private readonly delayTopics: Set<string>;
  /** Accepted, unfinished jobs in acceptance order (the first is the oldest). */
  private readonly pending = new Map<WorkItem, true>();
  private readonly idleWaiters = new Set<() => void>();
  private stopCommitTimer: (() => void) | undefined;
  private readonly membership: Membership;
  private readonly parking: KeyParking | undefined;
  private readonly rounds: TransactionRounds | undefined;
  private stopping: Promise<void> | undefined;

  protected get logger(): Logger {
    return this.deps.logger;
  }

  constructor(private readonly deps: CoreDeps) {
    super();
    const { options: o, clock, logger, metrics, producer } = deps;
    const random = deps.random ?? Math.random;
    const giveUp = (tp: string) => this.membership.giveUp(tp, this.topicList(), () => this.jobTopics());
    // Every waiting job (backoff, registry, store) listens for stop: many at once is by design.
    setMaxListeners(0, this.state.stopSignal);
    const metadataMaxChars = deps.metadataMaxChars ?? DEFAULT_METADATA_MAX_CHARS;
    const labels = { topic: o.topic, group: o.groupId };
    this.buffer = new JobBuffer(o.maxBufferedJobs, o.maxBufferedBytes, clock);
    this.rounds = exactlyOnceRounds(deps, random, {
      ...{ full: () => void this.commit(), giveUp },
      current: (tp, t) => this.state.running && this.assignment.get(tp)?.tracker === t,
    });
    this.assignment = new Assignment({
      ...{ consumer: deps.consumer, clock, logger },
      beforeReconcile: this.rounds && ((fresh) => this.rounds!.fenceAll(fresh)),
      onRevoke: (tp) => {
        this.rounds?.released(tp);
        if (tp.startsWith(`${deps.topics.main}:`))
          this.parking?.state.drop(Number(tp.slice(deps.topics.main.length + 1)));
        const dropped = [
          ...this.dispatcher.dropPartition(tp),
          ...this.due.dropPartition(tp),
          ...this.delays.dropPartition(tp),
        ];
        for (const item of dropped) this.drop(item);
        logger.info({ tp, dropped: dropped.length }, 'partition revoked');
      },
      unchanged: async (topic, p, continuous) =>
        topic !== deps.topics.main || (this.parking?.state.unchanged(p, continuous) ?? true),
      onNewOwnership: (partitions) => {
        for (const p of partitions) if (p.topic === deps.topics.main) this.parking?.state.take(p.partition);
        // Paused: only delay buckets flow (they move delayed jobs to the paused job topic on time).
        const flowing = this.state.paused
          ? partitions.filter((p) => this.delayTopics.has(p.topic))
          : partitions;
        if (flowing.length > 0) deps.consumer.resumePartitions(flowing);
      },
    });
    const idem = o.idempotency;
    const leases =
      deps.store && idem
        ? new LeaseKeeper(deps.store, {
            leaseMs: idem.leaseMs,
            retainMs: idem.retainMs,
            scope: idem.scope ?? `${o.groupId}/${o.topic}`,
            key: idem.key,
            workerId: deps.workerId,
            clock,
            random,
            onStoreUnavailable: () => metrics.failures.inc({ ...labels, error_class: 'StoreUnavailable' }),
          })
        : undefined;
    // A job ended (its outcome acknowledged): done, if its partition is still this ownership's.
    const done = (item: WorkItem) => {
      const ok = this.assignment.owns(item) && item.tracker.complete(Number(item.offset));
      this.rounds?.settled(item, ok);
      return ok;
    };
    const stage = this.rounds?.stageRouted;
    const router = new OutcomeRouter(producer, deps.topics, o.groupId, clock, o.retry.tiers, logger, stage);
    const executor = new Executor({
      ...{ options: o, state: this.state, clock, logger, metrics, decoder: deps.decoder, router, leases },
      dispatcher: () => this.dispatcher,
      followUps: deps.followUps,
      parking: () => this.parking,
      owns: (item) => this.assignment.owns(item),
      confirm: (item) => this.assignment.confirm(item),
      done,
      settle: (item) => this.dispatcher.settle(item),
      emit: (event, ...args) => this.emit(event, ...(args as never)),
      hears: (event) => this.listenerCount(event) > 0,
      random,
    });
    this.parking = KeyParking.create(o, deps.parking, {
      ...{ rounds: this.rounds, topics: deps.topics, committer: () => this.committer },
      ...{ options: o, router, runState: this.state, clock, logger, metrics, random },
      ...{ counts: executor.counts, emit: (event, ...args) => this.emit(event, ...(args as never)) },
      ...{ assignment: this.assignment, dispatcher: () => this.dispatcher, durably: executor.durably },
      ...{ running: () => this.state.running, runReleased: (item, slot) => executor.runReleased(item, slot) },
      ...{ done, lost: (p: number) => giveUp(`${deps.topics.main}:${p}`) },
    });
    const fairness = Fairness.create(o, deps);
    this.dispatcher = new Dispatcher({
      ...{ tenants: fairness?.tenants, concurrency: o.concurrency, ordering: o.ordering, limiter: o.limiter },
      batch: o.batchHandler
        ? { ...(o.batch ?? defaultBatchOptions), onePerKey: this.parking !== undefined }
        : undefined,
      clock,
      state: this.state,
      run: (item, slot) => executor.execute(item, slot),
      runBatch: (items, slot) => executor.executeBatch(items, slot),
      canGrow: () => this.buffer.hasRoom(0),
      finished: (item) => this.drop(item),
      idle: () => [...this.idleWaiters].forEach((w) => void w()),
    });
    this.delays = new DelayForwarder({
      topics: deps.topics,
      group: o.groupId,
      buckets: deps.topics.delays ?? [],
      sender: new BatchedSender(deps.producer, clock),
      stage: this.rounds && TransactionRounds.add,
      state: this.state,
      clock,
      logger,
      random,
      confirm: (item) => this.assignment.confirm(item),
      done,
      finished: (item) => this.drop(item),
    });
    this.due = new DueQueue(clock, (item) => {
      this.dispatcher.add(item);
      this.dispatcher.pump();
    });
    this.delayTopics = new Set((deps.topics.delays ?? []).map((b) => b.topic));
    this.intake = new Intake({
      ...{ topics: deps.topics, group: o.groupId, assignment: this.assignment, buffer: this.buffer },
      ...{ dispatcher: this.dispatcher, state: this.state, clock, metadataMaxChars, pending: this.pending },
      exactlyOnce: this.rounds !== undefined,
      drop: (item) => this.drop(item),
      resumePartition: (topic, partition) => {
        if (!this.state.paused || this.delayTopics.has(topic))
          deps.consumer.resumePartitions([{ topic, partition }]);
      },
      due: this.due,
      parking: this.parking,
      delays: { topics: this.delayTopics, add: (item) => this.delays.add(item) },
      unknownTopic: (topic) => deps.unknownTopic?.(topic),
      fairness,
    });
    this.committer = new Committer({
      ...{ consumer: deps.consumer, assignment: this.assignment, state: this.state, logger, metrics },
      ...{ group: o.groupId, metadataMaxChars, round: () => this.membership.round, rounds: this.rounds },
      onFenced: (error, round) => this.membership.fenced(error, round),
      onCommitted: (offsets) =>
        this.emit(
          'commit',
          offsets.map(({ topic, partition, offset }) => ({ topic, partition, offset: String(offset) })),
        ),
    });
    this.membership = new Membership({
      ...{ options: o, state: this.state, assignment: this.assignment, dispatcher: this.dispatcher },
      ...{ committer: this.committer, consumer: deps.consumer, clock, logger, metrics, random },
      idle: (deadline) => this.idle(deadline),
      emit: (event, ...args) => this.emit(event, ...(args as never)),
      verified: () => this.parking?.resumeAll(),
      unknownTopic: (topic) => deps.unknownTopic?.(topic),
    });
    // Sampled when scraped, not per job.
    metrics.sampleOnScrape(metrics.inflight, () =>
      metrics.inflight.set(labels, this.dispatcher.inflightJobs),
    );
    metrics.sampleOnScrape(metrics.stuckJobs, () => metrics.stuckJobs.set(labels, this.dispatcher.stuckJobs));
  }

  /** Accepted jobs not yet finished, and their bytes. */
  get buffered(): { jobs: number; bytes: number } {
    return { jobs: this.buffer.jobs, bytes: this.buffer.bytes };
  }

  /** Jobs holding a concurrency slot now. */
  get inflight(): number {
    return this.dispatcher.inflight;
  }

  /** Handlers still running past jobTimeoutMs after their abort (slot given back). */
  get stuck(): number {
    return this.dispatcher.stuckJobs;
  }

  /** Joined the group and holding an assignment (possibly empty, by design). */
  get joined(): boolean {
    return this.membership.joined;
  }

  /** Owned job-topic partitions whose parked keys cannot be read now (none of their jobs starts). */
  get stalledParking(): number[] {
    return this.parking?.state.stalled() ?? [];
  }
  /** When the oldest accepted, unfinished job was accepted. */
  oldestAcceptedAt(): number | undefined {
    return this.pending.keys().next().value?.acceptedAt;
  }

  assignedPartitions(): { topic: string; partition: number }[] {
    return this.assignment.partitions().map(({ tracker: t }) => ({ topic: t.topic, partition: t.partition }));
  }

  /** Joins the group and starts the commit timer. */
  async start(): Promise<void> {
    if (this.state.phase !== 'new')
      throw new StrandError('CONFIG', `worker core already ${this.state.phase}`);
    this.state.phase = 'running';
    await this.deps.consumer.start(this.membership.hooks, (batch) => this.intake.onBatch(batch));
    if (!this.state.running) return;
    this.stopCommitTimer = every(
      this.deps.clock,
      this.deps.options.commitIntervalMs,
      () => void this.commit(),
    );
  }

  /** Commits every owned partition whose commit point moved. */
  commit(): Promise<void> {
    return this.committer.commit();
  }

  private drop(item: WorkItem): void {
    if (this.pending.delete(item)) this.buffer.release(item);
  }

  /** Resolves when no job holds a slot, or at `deadline`. */
  async idle(deadline: number): Promise<void> {
    const { clock } = this.deps;
    while (this.dispatcher.inflight > 0 && clock.now() < deadline) {
      const timer = new AbortController();
      let wake!: () => void;
      const settled = new Promise<void>((r) => (wake = r));
      this.idleWaiters.add(wake);
      await Promise.race([settled, sleep(clock, deadline - clock.now(), timer.signal)]);
      this.idleWaiters.delete(wake);
      timer.abort();
    }
  }

  private topicList(): string[] {
    const { main, tiers, delays } = this.deps.topics;
    return [main, ...tiers, ...(delays ?? []).map((b) => b.topic)];
  }

  /** Consumes delay buckets created after the start too (a new subscription: the group rebalances, drained first). */
  async consumeDelayBuckets(buckets: readonly DelayBucket[]): Promise<void> {
    const { consumer, topics } = this.deps;
    if (!consumer.resubscribe || !this.state.running) return;
    topics.delays = [...buckets];
    for (const b of buckets) this.delayTopics.add(b.topic);
    this.delays.setBuckets(buckets);
    await this.membership.resubscribe(this.topicList(), () => this.jobTopics());
  }

  /** The topics whose jobs `pause()` holds back: the job topic and its retry tiers. */
  private jobTopics(): string[] {
    const { main, tiers } = this.deps.topics;
    return [main, ...tiers];
  }

  /** Stops starting jobs and fetching the job topic and its tiers (running jobs finish; delay buckets flow). */
  pause(): void {
    this.state.paused = true;
    this.deps.consumer.pause(this.jobTopics());
  }

  resume(): void {
    this.state.paused = false;
    this.deps.consumer.resume(this.jobTopics());
    this.dispatcher.pump();
  }

  /** Graceful stop: no new jobs; running ones get `timeoutMs` before their signals abort; final commit; leave. */
  stop(opts: { timeoutMs?: number } = {}): Promise<void> {
    this.stopping ??= this.shutdown(opts.timeoutMs ?? this.deps.options.shutdownTimeoutMs);
    return this.stopping;
  }

  private async shutdown(budgetMs: number): Promise<void> {
    const { clock, logger, consumer } = this.deps;
    const wasStarted = this.state.phase !== 'new';
    this.state.phase = 'stopping';
    if (!wasStarted) {
      this.state.phase = 'stopped';
      return;
    }
    this.buffer.wake();
    this.stopCommitTimer?.();
    this.membership.clearTimers();
    this.assignment.clearTimers();
    consumer.pause(this.topicList());
    await this.idle(clock.now() + budgetMs);
    if (this.dispatcher.inflight > 0) {
      logger.warn({ running: this.dispatcher.inflight }, 'shutdown budget spent; aborting running jobs');
      this.dispatcher.abortAll(new StrandError('JOB_TIMEOUT', 'worker is shutting down'));
      this.state.abortWaits();
      await this.idle(clock.now() + 5000);
    }
    this.state.abortWaits();
    this.dispatcher.releaseWaiting();
    // Jobs held until they are due stay uncommitted: the next owner reads them again.
    for (const item of [...this.due.dropAll(), ...this.delays.dropAll()]) this.drop(item);
    await Promise.race([this.delays.settled(), sleep(clock, 5000)]);
    this.state.rebalancing = false;
    await this.committer.commit();
    await consumer.stop().catch((e: unknown) => logger.warn({ err: e }, 'consumer disconnect failed'));
    await this.deps.transactions?.stop();
    this.state.phase = 'stopped';
    this.membership.left();
  }
}
