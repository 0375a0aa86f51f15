import type { OutcomeRouter } from '../failure/router.js';
import { HEADERS, headerString } from '../headers.js';
import type { Logger } from '../observability/logger.js';
import type { OutcomeCounts, QueueMetrics } from '../observability/metrics.js';
import type { ParkingPort } from '../ports.js';
import type { Clock } from '../timing/clock.js';
import type { Assignment } from './assignment.js';
import type { WorkerEvents } from './core.js';
import type { Dispatcher, JobSlot } from './dispatcher.js';
import { Abandoned } from './lease.js';
import type { ResolvedWorkerOptions } from './options.js';
import { type ParkedKey, ParkingState } from './parking.js';
import type { RunState } from './run-state.js';
import { tpKey, WorkItem } from './work-item.js';

/** Why a parked job was dead-lettered with reason `key-dead`: the job its key waited behind died. */
export class KeyDeadError extends Error {
  constructor(
    readonly key: string,
    readonly headJobId: string,
  ) {
    super(
      `job ${headJobId} of key ${key} was dead-lettered; this job waited behind it (retry.onDeadKey: 'dead-letter')`,
    );
    this.name = 'KeyDeadError';
  }
}

/**
 * What a job-topic job does at its turn in its key's lane: run, be parked behind its key's head,
 * be skipped (handed off before: a parked job or the head, read again after a restart), or — a
 * release record — release its key.
 */
export type Gate = 'run' | 'follow' | 'handed-off' | 'release' | 'closing';

type Emit = <E extends keyof WorkerEvents>(event: E, ...args: WorkerEvents[E]) => void;

/**
 * Strict key order through retry tiers (`retry.ordering: 'strict'`). When a job of key K goes to a
 * retry tier it becomes K's head and K is parked on its partition: later jobs of K are written, in
 * offset order, to the parking topic (parking.ts) and their offsets count as done, so the commit
 * point moves and other keys flow. The head's retry carries `strand-parks-key`; whoever ends it
 * (completed, or dead-lettered) writes a release record with K to the head's job-topic partition.
 * That record reaches K's lane in offset order, behind every job of K parked before it and ahead of
 * every later one, and runs K's parked jobs there one by one (or dead-letters them, `key-dead`,
 * with `onDeadKey: 'dead-letter'`). A parked job that fails into a tier becomes the new head; the
 * ones behind it stay parked. The release record counts as done only when the key was released or
 * parked again, so a crash mid-release resumes from the parking topic.
 */
export class KeyParking {
  readonly state: ParkingState;

  /** Keys are parked with `retry.ordering: 'strict'`, ordered jobs and retry tiers to park behind. */
  static wanted(o: ResolvedWorkerOptions): boolean {
    return o.retry.ordering === 'strict' && o.ordering !== 'unordered' && o.retry.tiers.length > 0;
  }

  static create(
    o: ResolvedWorkerOptions,
    port: ParkingPort | undefined,
    deps: Omit<ConstructorParameters<typeof KeyParking>[0], 'state'> & {
      running: () => boolean;
      random: () => number;
    },
  ): KeyParking | undefined {
    if (!port || !KeyParking.wanted(o)) return undefined;
    const state = new ParkingState({
      port,
      group: o.groupId,
      clock: deps.clock,
      logger: deps.logger,
      running: deps.running,
      random: deps.random,
    });
    return new KeyParking({ ...deps, state });
  }

  constructor(
    private readonly deps: {
      state: ParkingState;
      options: ResolvedWorkerOptions;
      router: OutcomeRouter;
      runState: RunState;
      clock: Clock;
      logger: Logger;
      metrics: QueueMetrics;
      counts: OutcomeCounts;
      emit: Emit;
      assignment: Assignment;
      dispatcher: () => Dispatcher;
      /** Until acknowledged; throws `Abandoned` when the partition left or the worker stops. */
      durably: <T>(item: WorkItem, send: () => Promise<T>) => Promise<T>;
      /** Runs a released job through the executor (decode, lease, handler, policy): sets its `outcome`. */
      runReleased: (item: WorkItem, slot: JobSlot) => Promise<void>;
      /** The item reached an outcome: its offset counts as done. */
      done: (item: WorkItem) => void;
    },
  ) {
    this.state = deps.state;
    const { metrics, options } = deps;
    const labels = { topic: options.topic, group: options.groupId };
    metrics.sampleOnScrape(metrics.parkedKeys, () =>
      metrics.parkedKeys.set(labels, this.state.counts().keys),
    );
    metrics.sampleOnScrape(metrics.parkedJobs, () =>
      metrics.parkedJobs.set(labels, this.state.counts().jobs),
    );
  }

  /** A job of the job topic with a key, at its turn in its lane: what happens to it. */
  gate(item: WorkItem): Gate {
    if (item.tier !== 0 || item.key === null || item.released) return 'run';
    if (item.rawHeaders?.[HEADERS.release] !== undefined) return 'release';
    const parked = this.state.get(item.partition, item.key);
    if (!parked) return 'run';
    const offset = Number(item.offset);
    if (offset <= parked.last || this.state.handedOff(item.partition, offset)) return 'handed-off';
    return parked.closing ? 'closing' : 'follow';
  }

  /** A job gated 'closing': resolves once its key's release ended (unparked, or given up); gate it again. */
  async closed(item: WorkItem): Promise<void> {
    await this.state.get(item.partition, item.key!)?.closing;
  }

  /** `item` went to a retry tier: its key waits behind it (acknowledged before its offset is done). */
  park(item: WorkItem): Promise<void> {
    const parked = this.state.get(item.partition, item.key!);
    const written = this.deps.durably(item, () => this.state.park(item));
    if (parked) {
      parked.heading = { jobId: item.jobId, written };
      const clear = () => {
        if (parked.heading?.written === written) parked.heading = undefined;
      };
      written.then(clear, clear);
    }
    return written;
  }

  /** Whether `item` going to a retry tier parks its key. */
  parks(item: WorkItem): boolean {
    return item.tier === 0 && item.key !== null;
  }

  /**
   * The head of a parked key ended in this worker, which also owns the key's job-topic partition
   * (the co-partitioned assignment gives one member partition i of the job topic and of its tiers):
   * the key is released now, in its lane, instead of when the intake reaches the release record.
   * That record was written first; whichever of the two comes second finds the key released (or
   * parked behind another head) and does nothing.
   */
  releaseNow(head: WorkItem, outcome: 'completed' | 'dead'): void {
    const p = Number(head.headers[HEADERS.originPartition] ?? head.partition);
    const key = head.key;
    if (key === null || this.state.get(p, key)?.head !== head.jobId) return;
    this.startRelease(p, key, outcome);
  }

  /**
   * Releases whose record is already behind the commit point (a release this worker or an earlier
   * owner began, then lost): resumed from the key's state as soon as the intake passed every job
   * of the key parked before. Called when a partition's parked keys are known and after each
   * fetched batch of the job topic.
   */
  resume(partition: number): void {
    for (const [key, parked] of this.state.keysOf(partition))
      if (parked.releasing && !parked.releaser) this.startRelease(partition, key, parked.releasing.outcome);
  }

  /** After a rebalance: releases to resume in every owned job-topic partition, once its parked keys are known. */
  resumeAll(): void {
    for (const { tracker } of this.deps.assignment.partitions())
      if (tracker.topic === this.deps.options.topic)
        void this.state.ready(tracker.partition)?.then(() => this.resume(tracker.partition));
  }

  /** The intake waits for a partition's parked keys before its first batch. */
  ready(partition: number): Promise<void> | undefined {
    return this.state.ready(partition);
  }

  /** The intake took a batch of the job topic's `partition`. */
  passed(partition: number): void {
    this.resume(partition);
  }

  /** Starts the release the key's state asks for, unless one runs. */
  private continueRelease(p: number, key: string, parked: ParkedKey): void {
    if (this.state.get(p, key) === parked && parked.releasing && !parked.releaser)
      this.startRelease(p, key, parked.releasing.outcome);
  }

  /** Adds a release of `key` to its lane, once this ownership read the job topic past its parked jobs. */
  private startRelease(p: number, key: string, outcome: 'completed' | 'dead'): void {
    const { options, assignment, clock } = this.deps;
    const owned = assignment.get(tpKey(options.topic, p));
    const parked = this.state.get(p, key);
    if (!owned?.verified || !parked || parked.releaser) return;
    // Not before this ownership read the job topic past every offset parked (by it or before it):
    // one read again after the release would run as a fresh job. The release record does it then.
    const top = Math.max(parked.last, this.state.loadedTop(p), parked.followers.at(-1)?.src ?? -1);
    if (!owned.tracker.passed(top)) return;
    parked.releaser = true;
    const record = {
      offset: '-1',
      key: Buffer.from(key),
      value: null,
      headers: { [HEADERS.release]: parked.head, [HEADERS.releaseOutcome]: outcome },
    };
    // Behind the jobs of its key already in the lane (they are parked first, then released).
    const release = new WorkItem(
      options.topic,
      p,
      record,
      0,
      owned.tracker,
      Number.MAX_SAFE_INTEGER,
      clock.now(),
    );
    const dispatcher = this.deps.dispatcher();
    dispatcher.add(release);
    dispatcher.pump();
  }

  /** Handles a gated job; true when its offset may count as done. */
  async handle(item: WorkItem, slot: JobSlot, gate: Exclude<Gate, 'run' | 'closing'>): Promise<boolean> {
    if (gate === 'handed-off') return true;
    const parked = this.state.get(item.partition, item.key!);
    if (gate === 'follow') {
      if (!parked) return true;
      const written = this.deps.durably(item, () => this.state.follow(item, parked));
      parked.writes ??= new Set();
      const writes = parked.writes;
      writes.add(written);
      void written.then(
        () => writes.delete(written),
        () => writes.delete(written),
      );
      // The key's next job may be parked meanwhile; this one keeps its slot (a drain waits for it)
      // and counts as done once acknowledged.
      this.deps.dispatcher().releaseLane(item);
      await written;
      this.deps.emit('job:parked', item, parked.head);
      return true;
    }
    const head = headerString(item.rawHeaders, HEADERS.release);
    // A release of a head this key no longer waits behind (sent twice, or read again): nothing to do.
    if (!parked) {
      // Not parked here: a state another writer left in the parking topic (a member that wrote
      // after it lost the partition) must not park the key for the next owner either.
      await this.deps.durably(item, () => this.state.unpark(item.partition, item.key!));
      return true;
    }
    // The key's next head may be being written (a released job that just went to a tier, whose
    // retry already ended): this release is for it once that write landed.
    // (A job id enqueued twice may be the head again: wait whenever a head of this id is being written.)
    const heading = parked.heading;
    if (heading && heading.jobId === head) await heading.written.catch(() => undefined);
    if (parked.head !== head) return true;
    // Another release of the key runs or is queued (a resumed one, or the one this worker started
    // at once): this record counts as done once the key's state says it is being released.
    if (parked.releaser && item.offset !== '-1') {
      await this.markReleasing(item, parked, head);
      // Unless the release it found under way ended meanwhile (it was the previous head's): then
      // this record runs the release itself.
      if (parked.releaser || this.state.get(item.partition, item.key!) !== parked) return true;
    }
    try {
      await this.release(item, slot, parked, head);
    } finally {
      parked.releaser = undefined;
      // The key's next head ended while this release still ran (its release record found this
      // one under way): that release starts now.
      this.continueRelease(item.partition, item.key!, parked);
    }
    return true;
  }

  /**
   * Writes that the key is being released (unless its state says so already); returns the dead job
   * the rest is dead-lettered behind (`onDeadKey: 'dead-letter'`), if any.
   */
  private async markReleasing(item: WorkItem, parked: ParkedKey, head: string): Promise<string | undefined> {
    if (parked.releasing) return parked.releasing.cause;
    const outcome = headerString(item.rawHeaders, HEADERS.releaseOutcome) === 'dead' ? 'dead' : 'completed';
    const cause =
      outcome === 'dead' && this.deps.options.retry.onDeadKey === 'dead-letter' ? head : undefined;
    await this.deps.durably(item, () =>
      this.state.releasing(item.partition, item.key!, parked, { outcome, cause }),
    );
    return cause;
  }

  /** Every hand-off of the key's jobs under way has landed (or failed). */
  private async landed(parked: ParkedKey): Promise<void> {
    while (parked.writes && parked.writes.size > 0) await Promise.allSettled([...parked.writes]);
  }

  private async release(item: WorkItem, slot: JobSlot, parked: ParkedKey, head: string): Promise<void> {
    const { options, durably, clock, emit, logger, dispatcher } = this.deps;
    const key = item.key!;
    const p = item.partition;
    parked.releaser = true;
    const resumed = parked.releasing !== undefined;
    // First the key's state says it is being released (a new owner resumes from it); then the
    // release record counts as done and the key's lane is free — its new jobs are parked behind
    // the release, in order — so the partition's commit point and its other keys move on while the
    // parked jobs run, however many there are.
    let cause = await this.markReleasing(item, parked, head);
    this.deps.done(item);
    dispatcher().releaseLane(item);
    logger.info(
      { partition: p, key, head, parked: parked.followers.length, deadLetter: cause !== undefined },
      resumed
        ? 'key release resumed: its parked jobs run in order'
        : 'key released: its parked jobs run in order',
    );
    const tombstones: Promise<void>[] = [];
    for (;;) {
      await this.landed(parked);
      if (parked.followers.length === 0) {
        if (parked.writes?.size) continue;
        break;
      }
      const wanted = parked.followers.length;
      const records = await durably(item, () => this.state.read(p, parked));
      if (records.length === 0) {
        logger.warn({ partition: p, key, missing: wanted }, 'parked jobs missing from the parking topic');
        parked.followers.splice(0, Math.min(500, wanted));
        continue;
      }
      for (const record of records) {
        if (!this.deps.assignment.owns(item) || !this.deps.runState.running) throw new Abandoned();
        const job = new WorkItem(item.topic, p, record, 0, item.tracker, item.seq, clock.now());
        job.released = true;
        job.slot = slot;
        const src = Number(record.offset);
        if (cause !== undefined) {
          const error = new KeyDeadError(key, cause);
          const dead = cause;
          await durably(job, () =>
            this.deps.router.toDlq(job, error, job.attempt, 'key-dead', undefined, {
              [HEADERS.deadCause]: dead,
            }),
          );
          this.deps.counts.dead_lettered++;
          emit('job:dead', job, error);
        } else {
          await this.deps.runReleased(job, slot);
          if (job.outcome === undefined) throw new Abandoned();
          // It went to a tier: the key is parked behind it now, with the jobs after it.
          if (job.outcome === 'tier') {
            await Promise.all(tombstones);
            return;
          }
          if (job.outcome === 'dlq' && options.retry.onDeadKey === 'dead-letter') {
            const dead = job.jobId;
            cause = dead;
            // A resumed release dead-letters the rest too.
            await durably(item, () => this.state.releasing(p, key, parked, { outcome: 'dead', cause: dead }));
          }
        }
        // Off the list now (the next read starts after it); its tombstone goes out meanwhile.
        const tombstone = durably(item, this.state.ran(p, parked, src));
        // Awaited below; a release cut short (Abandoned) leaves it unawaited, not unhandled.
        tombstone.catch(() => undefined);
        tombstones.push(tombstone);
      }
    }
    // Every parked job ran: the key's next job waits (gate 'closing') until the key is unparked.
    let closed!: () => void;
    parked.closing = new Promise<void>((resolve) => (closed = resolve));
    try {
      await Promise.all(tombstones);
      await durably(item, () => this.state.unpark(p, key));
    } catch (error) {
      // The unpark may have landed: a job of the key parked from now on writes the key's state
      // (releasing) again with it, so nothing is parked behind a key the parking topic calls free.
      parked.restate = true;
      throw error;
    } finally {
      parked.closing = undefined;
      closed();
    }
  }
}
