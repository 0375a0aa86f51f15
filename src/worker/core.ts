import { EventEmitter, setMaxListeners } from 'node:events';
import { StrandError } from '../errors.js';
import { OutcomeRouter, type Route } from '../failure/router.js';
import type { IdempotencyStore } from '../idempotency/store.js';
import type { Logger } from '../observability/logger.js';
import type { QueueMetrics } from '../observability/metrics.js';
import type { ConsumerPort, GroupHooks, JobDecoder, ProducePort } from '../ports.js';
import { backoffDelay, retryPolicies } from '../timing/backoff.js';
import { type Clock, every, sleep, type TimerHandle } from '../timing/clock.js';
import type { TopicNames } from '../topology/topics.js';
import { Assignment } from './assignment.js';
import { Committer } from './committer.js';
import { Dispatcher } from './dispatcher.js';
import { Executor } from './executor.js';
import { Intake, JobBuffer } from './intake.js';
import { LeaseKeeper } from './lease.js';
import { DEFAULT_METADATA_MAX_CHARS } from './offset-map.js';
import type { Job, ResolvedWorkerOptions } from './options.js';
import { RunState } from './run-state.js';
import type { WorkItem } from './work-item.js';

/** Events a worker emits (all synchronous; listeners must not throw). */
export interface WorkerEvents {
  'job:started': [job: Job<unknown>];
  'job:completed': [job: Job<unknown>, info: { durationMs: number }];
  'job:failed': [
    job: Job<unknown>,
    error: unknown,
    info: { next: 'in-place' | 'tier' | 'dlq' | 'abandoned'; attempt: number },
  ];
  'job:retried': [job: Job<unknown>, route: Extract<Route, { kind: 'tier' }>];
  'job:dead': [
    item: { topic: string; partition: number; offset: string; key: string | null; jobId: string },
    error: unknown,
  ];
  'job:duplicate': [job: Job<unknown>];
  rebalance: [assignment: { topic: string; partitions: number[] }[]];
  commit: [offsets: { topic: string; partition: number; offset: string }[]];
}

/** What the core is built from: the ports, the options and the clock. */
export interface CoreDeps {
  readonly options: ResolvedWorkerOptions;
  readonly topics: TopicNames;
  readonly consumer: ConsumerPort;
  readonly producer: ProducePort;
  readonly decoder: JobDecoder;
  readonly store?: IdempotencyStore | undefined;
  readonly clock: Clock;
  readonly logger: Logger;
  readonly metrics: QueueMetrics;
  readonly workerId: string;
  /** Longest offset-map metadata in characters. @defaultValue 4000 (Kafka allows 4096 bytes) */
  readonly metadataMaxChars?: number;
  readonly random?: () => number;
}

/**
 * The worker's core, wired from its parts (docs/architecture.md): intake → dispatcher → executor,
 * with the assignment, the committer and the group hooks (drain before rejoin, assignment, crash
 * and restart). It talks to Kafka only through the ports, so the same code runs on kafkajs and in
 * the deterministic simulation (test/sim).
 */
export class WorkerCore extends EventEmitter<WorkerEvents> {
  readonly state = new RunState();
  private readonly assignment: Assignment;
  private readonly buffer: JobBuffer;
  private readonly dispatcher: Dispatcher;
  private readonly intake: Intake;
  private readonly committer: Committer;
  /** Accepted, unfinished jobs in acceptance order (the first is the oldest). */
  private readonly pending = new Map<WorkItem, true>();
  private readonly idleWaiters = new Set<() => void>();
  private stopCommitTimer: (() => void) | undefined;
  private restartTimer: TimerHandle | undefined;
  /** Consumer restarts since the last join (the backoff exponent). */
  private restarts = 0;
  private isJoined = false;
  /** Counts assignments, so a late check of an old one does not release a newer rebalance. */
  private joinRound = 0;
  private stopping: Promise<void> | undefined;

  constructor(private readonly deps: CoreDeps) {
    super();
    const { options: o, clock, logger, metrics } = deps;
    const random = deps.random ?? Math.random;
    // Every waiting job (backoff, registry, store) listens for stop: many at once is by design.
    setMaxListeners(0, this.state.stopSignal);
    const metadataMaxChars = deps.metadataMaxChars ?? DEFAULT_METADATA_MAX_CHARS;
    const labels = { topic: o.topic, group: o.groupId };
    this.buffer = new JobBuffer(o.maxBufferedJobs, o.maxBufferedBytes, clock);
    this.assignment = new Assignment({
      consumer: deps.consumer,
      clock,
      logger,
      onRevoke: (tp) => {
        const dropped = this.dispatcher.dropPartition(tp);
        for (const item of dropped) this.drop(item);
        logger.info({ tp, dropped: dropped.length }, 'partition revoked');
      },
      onNewOwnership: (partitions) => {
        if (!this.state.paused) deps.consumer.resumePartitions(partitions);
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
    const executor = new Executor({
      options: o,
      state: this.state,
      clock,
      logger,
      metrics,
      decoder: deps.decoder,
      router: new OutcomeRouter(deps.producer, deps.topics, o.groupId, clock),
      leases,
      dispatcher: () => this.dispatcher,
      owns: (item) => this.assignment.owns(item),
      confirm: (item) => this.assignment.confirm(item),
      done: (item) => {
        if (this.assignment.owns(item)) item.tracker.complete(Number(item.offset));
      },
      settle: (item) => this.dispatcher.settle(item),
      emit: (event, ...args) => this.emit(event, ...(args as never)),
      random,
    });
    this.dispatcher = new Dispatcher({
      concurrency: o.concurrency,
      ordering: o.ordering,
      limiter: o.limiter,
      clock,
      state: this.state,
      run: (item, slot) => executor.execute(item, slot),
      finished: (item) => {
        this.drop(item);
        if (this.dispatcher.inflight === 0) for (const w of [...this.idleWaiters]) w();
      },
    });
    this.intake = new Intake({
      topics: deps.topics,
      assignment: this.assignment,
      buffer: this.buffer,
      dispatcher: this.dispatcher,
      state: this.state,
      clock,
      metadataMaxChars,
      pending: this.pending,
      drop: (item) => this.drop(item),
      resumePartition: (topic, partition) => {
        if (!this.state.paused) deps.consumer.resumePartitions([{ topic, partition }]);
      },
    });
    this.committer = new Committer({
      consumer: deps.consumer,
      assignment: this.assignment,
      state: this.state,
      logger,
      metrics,
      group: o.groupId,
      metadataMaxChars,
      round: () => this.joinRound,
      onFenced: (error, round) => {
        // Refused for an assignment already replaced by a newer one: nothing to drop.
        if (round !== this.joinRound) return;
        logger.warn(
          { err: error },
          'commit refused: this worker is no longer in the group generation; its partitions are dropped until it rejoins',
        );
        this.joinRound++;
        this.assignment.revokeAll();
      },
      onCommitted: (offsets) =>
        this.emit(
          'commit',
          offsets.map(({ topic, partition, offset }) => ({ topic, partition, offset: String(offset) })),
        ),
    });
    // Sampled when scraped, not per job.
    metrics.sampleOnScrape(metrics.inflight, () => metrics.inflight.set(labels, this.dispatcher.inflight));
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
    return this.isJoined;
  }

  /** When the oldest accepted, unfinished job was accepted. */
  oldestAcceptedAt(): number | undefined {
    return this.pending.keys().next().value?.acceptedAt;
  }

  assignedPartitions(): { topic: string; partition: number }[] {
    return this.assignment
      .partitions()
      .map(({ tracker }) => ({ topic: tracker.topic, partition: tracker.partition }));
  }

  private readonly hooks: GroupHooks = {
    beforeRejoin: () => this.drainForRebalance(),
    assigned: (assignment) => {
      const ready = this.assignment.assign(assignment);
      // Nothing starts until kept partitions are known to be still ours (assignment.ts).
      const round = ++this.joinRound;
      void ready.then(() => {
        if (round !== this.joinRound) return;
        this.state.rebalancing = false;
        this.dispatcher.pump();
      });
      this.isJoined = true;
      this.restarts = 0;
      this.deps.metrics.rebalances.inc({ group: this.deps.options.groupId });
      const list = Object.entries(assignment).map(([topic, partitions]) => ({
        topic,
        partitions: [...partitions],
      }));
      this.deps.logger.info({ assignment: list }, 'assignment received');
      this.emit('rebalance', list);
    },
    crashed: (error, restarting) => this.onCrash(error, restarting),
  };

  /** Joins the group and starts the commit timer. */
  async start(): Promise<void> {
    if (this.state.phase !== 'new')
      throw new StrandError('CONFIG', `worker core already ${this.state.phase}`);
    this.state.phase = 'running';
    await this.deps.consumer.start(this.hooks, (batch) => this.intake.onBatch(batch));
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
  private async idle(deadline: number): Promise<void> {
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

  /**
   * The group is rebalancing and this member has not rejoined yet, so the old generation (and our
   * ownership) still holds: stop starting jobs, let running ones finish (up to rebalanceTimeoutMs)
   * and commit them, so the next owner of a revoked partition does not run them again. The port
   * holds our JoinGroup until this settles, as the Java client's onPartitionsRevoked does.
   */
  private async drainForRebalance(): Promise<void> {
    const { clock, options, logger } = this.deps;
    this.state.rebalancing = true;
    // A check of the previous assignment still under way must not end this rebalance.
    this.joinRound++;
    if (!this.state.running) return;
    // The coordinator expels a member that does not rejoin in time. Past that point the
    // partitions are someone else's: drop them, so a job still running here cannot route or
    // commit for them (a zombie's work).
    const start = clock.now();
    const deadlineMs = this.deps.consumer.rejoinDeadlineMs ?? Number.POSITIVE_INFINITY;
    const round = this.joinRound;
    const fence = Number.isFinite(deadlineMs)
      ? clock.setTimeout(
          () => {
            if (round !== this.joinRound || !this.state.rebalancing) return;
            logger.warn(
              { deadlineMs },
              'group rebalancing: the drain outlasted the rejoin deadline; partitions dropped',
            );
            this.joinRound++;
            this.assignment.revokeAll();
          },
          deadlineMs,
          { unref: true },
        )
      : undefined;
    await this.idle(start + Math.min(options.rebalanceTimeoutMs, deadlineMs * 0.8));
    // A commit stuck on a moving coordinator must not keep us from rejoining: past the budget,
    // rejoin uncommitted (the next owner redoes those jobs; the idempotency store, if any,
    // suppresses their side effects).
    const budget = new AbortController();
    const committed = await Promise.race([
      this.committer.commit({ duringRebalance: true }).then(() => true),
      sleep(clock, Math.min(5000, Math.max(0, start + deadlineMs - clock.now())), budget.signal).then(
        () => false,
      ),
    ]);
    budget.abort();
    clock.clearTimeout(fence);
    const stillRunning = this.dispatcher.inflight;
    if (committed)
      logger.info(
        { stillRunning },
        'group rebalancing: finished and committed in-flight jobs before rejoining',
      );
    else
      logger.warn(
        { stillRunning },
        'group rebalancing: the commit did not finish in time; rejoining without it',
      );
  }

  /**
   * The consumer has left the group when it reports a crash, so every partition is lost: waiting
   * jobs are dropped, running ones finish uncommitted (the next owner, maybe us again, redoes
   * them). Keeping the trackers would let a partition that another member moved forward meanwhile
   * be committed backwards. kafkajs restarts itself after retriable faults; after the others it
   * would stay down for good, leaving a live worker that takes no work, so the core restarts it.
   */
  private onCrash(error: Error, restarting: boolean): void {
    const { logger, metrics, options, clock } = this.deps;
    this.isJoined = false;
    this.joinRound++;
    this.assignment.revokeAll();
    this.state.rebalancing = false;
    if (!this.state.running) return;
    if (restarting) {
      logger.warn({ err: error }, 'consumer crashed; the client restarts it');
      return;
    }
    const delayMs = backoffDelay(retryPolicies.consumerRestart, this.restarts++, this.deps.random);
    logger.error(
      { err: error, restartInMs: Math.round(delayMs) },
      'consumer crashed and will not restart by itself; the worker restarts it',
    );
    metrics.consumerRestarts.inc({ group: options.groupId });
    clock.clearTimeout(this.restartTimer);
    // Not unref'd: while the consumer is down this timer may be all that keeps the process alive.
    this.restartTimer = clock.setTimeout(() => {
      if (!this.state.running) return;
      // A failed join reports another crash, which schedules the next attempt.
      this.deps.consumer.restart().catch((err: unknown) => this.onCrash(err as Error, false));
    }, delayMs);
  }

  private topicList(): string[] {
    return [this.deps.topics.main, ...this.deps.topics.tiers];
  }

  /** Stops starting jobs and pauses fetching; running jobs finish. */
  pause(): void {
    this.state.paused = true;
    this.deps.consumer.pause(this.topicList());
  }

  resume(): void {
    this.state.paused = false;
    this.deps.consumer.resume(this.topicList());
    this.dispatcher.pump();
  }

  /**
   * Graceful stop: no new jobs; running jobs get `timeoutMs` (default `shutdownTimeoutMs`) before
   * their signals abort; then the final commit, and the consumer leaves the group.
   */
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
    clock.clearTimeout(this.restartTimer);
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
    this.state.rebalancing = false;
    await this.committer.commit();
    await consumer.stop().catch((e: unknown) => logger.warn({ err: e }, 'consumer disconnect failed'));
    this.state.phase = 'stopped';
    this.isJoined = false;
  }
}
