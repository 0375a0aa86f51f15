import { HEADERS } from '../headers.js';
import type { FetchedBatch } from '../ports.js';
import { type Clock, sleep } from '../timing/clock.js';
import type { Assignment } from './assignment.js';
import type { Dispatcher } from './dispatcher.js';
import type { DueQueue } from './due-queue.js';
import type { Deferral } from './fairness/deferral.js';
import type { Fairness } from './fairness/fairness.js';
import type { JobBuffer } from './job-buffer.js';
import { offsetMapCapacity } from './offset-map.js';
import type { PartitionTracker } from './partition-tracker.js';
import type { RunState } from './run-state.js';
import { tpKey, WorkItem } from './work-item.js';

/** How long before its due time a retry-tier record is fetched and held (covers the fetch latency). */
const DUE_LEAD_MS = 300;
/** Ends `heartbeating`'s one-second sleep once the wait is over (nobody reads it). */
const SLEEP_OVER = 'the wait is over';

/**
 * Takes fetched batches into the worker: skips offsets already accepted in this ownership (a
 * re-fetch after a rejoin) or finished by the previous owner (its offset map), pauses a retry-tier
 * partition until its head is due, waits while the buffer is full or a partition's offset map is
 * at its limit, and hands accepted jobs to the dispatcher.
 */
export class Intake {
  private readonly mapCapacity: number;
  /** Parking loads known to have ended (a batch then need not wait on them). */
  private readonly loaded = new WeakSet<Promise<void>>();
  /** Fairness: job-topic records of an over-share tenant are deferred and read back later. */
  private readonly deferral: Deferral | undefined;
  /** Batches being taken now (strict batches: the buffer is shared among their partitions). */
  private readonly taking = new Set<FetchedBatch>();

  constructor(
    private readonly deps: {
      topics: { main: string; tiers: readonly string[] };
      /** This worker's consumer group: records another group wrote for itself are not its jobs. */
      group: string;
      assignment: Assignment;
      buffer: JobBuffer;
      dispatcher: Dispatcher;
      state: RunState;
      clock: Clock;
      metadataMaxChars: number;
      /** Skip offsets below the committed offset this ownership began from (rounds.ts). */
      exactlyOnce?: boolean;
      /** Jobs accepted and not finished, oldest first. */
      pending: Map<WorkItem, true>;
      /** Releases an accepted job that will not run here (its partition left, or stop). */
      drop: (item: WorkItem) => void;
      /** Fetches a paused partition again. */
      resumePartition: (topic: string, partition: number) => void;
      /** Retry-tier jobs taken shortly before they are due, held until then in offset order. */
      due: DueQueue;
      /** Delay bucket topics, and where their records go once their hold ended. */
      delays: { topics: ReadonlySet<string>; add: (item: WorkItem) => void };
      /** Strict key order: the parked keys of a job-topic partition are read before its jobs are taken. */
      parking?:
        | {
            ready(partition: number): Promise<void> | undefined;
            /** The intake took a batch of the job topic's partition (strict order resumes releases). */
            passed(partition: number): void;
            /** A job of the job topic was accepted (a release record takes over its key's release). */
            arrived(item: WorkItem): void;
          }
        | undefined;
      /** A batch of a topic this worker does not consume arrived (it was paused, not taken). */
      unknownTopic: (topic: string) => void;
      /** Tenants and limits: tells each job's tenant (fairness/). */
      fairness?: Fairness | undefined;
    },
  ) {
    this.mapCapacity = offsetMapCapacity(deps.metadataMaxChars);
    this.deferral = deps.fairness?.deferral({
      buffer: deps.buffer,
      clock: deps.clock,
      current: (tracker) => deps.assignment.get(tpKey(tracker.topic, tracker.partition))?.tracker === tracker,
      take: (tracker, record) => this.readmit(tracker, record),
      passed: (tracker) => {
        if (tracker.topic === deps.topics.main) deps.parking?.passed(tracker.partition);
      },
    });
  }

  /** The next job's place in the worker's acceptance order (the dispatcher's: it numbers releases too). */
  private seq(): number {
    return this.deps.dispatcher.nextSeq();
  }

  /** A deferred record read back: taken as a job (its offset was accepted when it was deferred). */
  private async readmit(tracker: PartitionTracker, record: FetchedBatch['records'][number]): Promise<void> {
    const { assignment, buffer, clock, pending, dispatcher } = this.deps;
    const item = new WorkItem(tracker.topic, tracker.partition, record, 0, tracker, this.seq(), clock.now());
    await this.deps.fairness?.resolve(item);
    const current = () => assignment.get(item.tp)?.tracker === tracker && this.deps.state.running;
    // The buffer's caps hold for records read back too (the intake may have filled it meanwhile).
    while (current() && !buffer.hasRoom(item.size)) await buffer.waitForRoom(1000);
    if (!current()) return;
    buffer.add(item);
    pending.set(item, true);
    if (item.tier === 0) this.deps.parking?.arrived(item);
    dispatcher.add(item);
    dispatcher.pump();
  }

  /**
   * Fairness: a job-topic record whose tenant holds its share of the buffer is deferred (accepted,
   * not done, not buffered) instead of waiting for room; true when it was. Waits (heartbeating)
   * while its key has deferred records and no more may be deferred.
   */
  private async deferred(
    item: WorkItem,
    batch: FetchedBatch,
    current: () => boolean,
    resolve: () => void,
  ): Promise<boolean | undefined> {
    for (;;) {
      const decision = this.deferral!.decide(item, !this.beyondMap(item.tracker, Number(item.offset)));
      if (decision === 'defer') {
        item.tracker.accept(Number(item.offset));
        this.deferral!.defer(item);
        return true;
      }
      if (decision === 'take') return false;
      resolve();
      await this.deps.buffer.waitForRoom(1000);
      if (!current()) return undefined;
      await batch.heartbeat();
    }
  }

  /** 0 for the job topic, n for retry tier n, -1 for a delay bucket, undefined for a topic not consumed here. */
  private tierOf(topic: string): number | undefined {
    if (topic === this.deps.topics.main) return 0;
    if (this.deps.delays.topics.has(topic)) return -1;
    const i = this.deps.topics.tiers.indexOf(topic);
    return i >= 0 ? i + 1 : undefined;
  }

  /**
   * Written by another consumer group for itself: a retry-tier record (the failing group's name),
   * or a delayed job one group moved on. Records from producers and replays carry no group.
   */
  private foreign(headers: FetchedBatch['records'][number]['headers']): boolean {
    const group = headers?.[HEADERS.group];
    if (group === undefined) return false;
    const name = Buffer.isBuffer(group) ? group.toString('utf8') : String(group);
    return name !== this.deps.group;
  }

  /** Accepting `offset` now could leave a done job outside the partition's offset map. */
  private beyondMap(tracker: PartitionTracker, offset: number): boolean {
    return tracker.pendingCount() > 0 && offset - (tracker.commitPoint() ?? offset) > this.mapCapacity;
  }

  /**
   * Waits for `ready` (a kept partition's check after a join, its parked keys under strict key
   * order, a tenant's decode). The first two may ask the parking topic until it answers, a big
   * parking partition takes seconds to read, a registry that does not answer holds a decode: the
   * batch heartbeats every second meanwhile, else the group would expel this member and the next
   * owner would start over. False once the batch is no longer current.
   */
  private async heartbeating(
    batch: FetchedBatch,
    ready: Promise<void>,
    current: () => boolean,
  ): Promise<boolean> {
    if (this.loaded.has(ready)) return true;
    let shared = false;
    for (;;) {
      const wait = new AbortController();
      const known = await Promise.race([
        ready.then(() => true),
        sleep(this.deps.clock, 1000, wait.signal).then(() => false),
      ]);
      // A reason of our own: the default one is a DOMException with a stack, built per batch.
      wait.abort(SLEEP_OVER);
      if (known) {
        this.loaded.add(ready);
        if (shared && current()) this.taking.add(batch);
        return true;
      }
      // A batch that waits this long (parking topic, registry) gives its part of the buffer back.
      shared ||= this.taking.delete(batch);
      if (!current()) return false;
      // Rejects when the group rebalances, so the client can rejoin.
      await batch.heartbeat();
    }
  }

  /**
   * Strict batches (one job per key): a batch can only fill with heads of many keys, and the
   * intake takes each partition in offset order, so the buffer must hold a stretch of every
   * partition being fetched rather than a deep stretch of the first one (5,000 jobs over 50 keys on
   * 6 partitions: the first partition's batch took 833 of 1,000 places, and batches held its 8 keys).
   * While several batches are being taken, each partition holds at most an equal part of the
   * buffer; a batch taken alone may fill it.
   */
  async onBatch(batch: FetchedBatch): Promise<void> {
    if (!this.deps.dispatcher.onePerKey || batch.records.length === 0) return this.take(batch);
    this.taking.add(batch);
    try {
      await this.take(batch);
    } finally {
      this.taking.delete(batch);
    }
  }

  /** The partition holds its part of the buffer while other partitions' batches wait for room. */
  private overShare(tracker: PartitionTracker): boolean {
    return this.taking.size > 1 && tracker.buffered >= Math.ceil(this.deps.buffer.maxJobs / this.taking.size);
  }

  private async take(batch: FetchedBatch): Promise<void> {
    const { assignment, buffer, dispatcher, state, clock, pending } = this.deps;
    const tp = tpKey(batch.topic, batch.partition);
    const tier = this.tierOf(batch.topic);
    if (tier === undefined) {
      // A topic this worker does not know, assigned because another member subscribes to it (delay
      // buckets created after this worker started): never run its records as jobs. The partition
      // stays paused until this worker consumes the topic too (it looks for new buckets then).
      batch.pause();
      this.deps.unknownTopic(batch.topic);
      return;
    }
    const delayed = tier < 0;
    // A retry-tier record waits for its due time, a delay-bucket record for the end of its hold.
    const holdHeader = delayed ? HEADERS.holdUntil : tier > 0 ? HEADERS.dueAt : undefined;
    // A batch of a partition this worker does not own (fetched before a revoke, or after its
    // commit was refused as fenced) is left alone; the client fetches it again when it is ours.
    const owned = assignment.get(tp);
    if (!owned) return;
    const tracker = owned.tracker;
    const ours = () => state.running && assignment.get(tp)?.tracker === tracker;
    const current = () => batch.isActive() && ours();
    // The client's own check (kafkajs builds a key per call) changes only across an await: nothing
    // here seeks, and jobs start in a microtask of their own (executor.ts). Asked again after each.
    let active = false;
    // Acceptance time: the clock is read once per stretch without an await, not per record.
    let now = 0;
    if (!(await this.heartbeating(batch, owned.ready, current))) return;
    const keys = tier === 0 ? this.deps.parking?.ready(batch.partition) : undefined;
    if (keys && !(await this.heartbeating(batch, keys, current))) return;
    // The fetch position moves once per stretch of accepted records, not per record (kafkajs
    // converts every resolved offset to a Long): before any wait, any return, and at the end.
    let resolved: string | undefined;
    const resolve = () => {
      if (resolved !== undefined) batch.resolveOffset(resolved);
      resolved = undefined;
    };
    for (const record of batch.records) {
      if (active) {
        if (!ours()) return resolve();
      } else {
        if (!current()) return resolve();
        active = true;
        now = clock.now();
      }
      const offset = Number(record.offset);
      // Exactly once: below the offset committed when this ownership began (read after fencing the
      // previous owner) is the previous owner's, even if the client's fetch began earlier.
      if (tracker.seen(offset) || (this.deps.exactlyOnce && tracker.passed(offset))) {
        resolved = record.offset;
        continue;
      }
      if (
        tracker.preloadedDone.delete(offset) ||
        this.foreign(record.headers) ||
        (!this.deps.parking && record.headers?.[HEADERS.release] !== undefined)
      ) {
        // The previous owner finished it out of order (offset map), or another consumer group of
        // this topic wrote it for itself (its retry, its copy of a delayed job), or it releases a
        // parked key and this worker does not park keys (retry.ordering 'relaxed'): done, not run.
        tracker.accept(offset);
        tracker.complete(offset);
        resolved = record.offset;
        continue;
      }
      let holdUntil = 0;
      if (holdHeader !== undefined) {
        const wait = Number(record.headers?.[holdHeader]?.toString() ?? '0') - clock.now();
        if (wait > DUE_LEAD_MS) {
          // Not due: pause this partition and fetch it again from this offset shortly before it is
          // due (the lead covers the fetch round trip), instead of holding it in memory.
          resolve();
          batch.pause();
          clock.clearTimeout(owned.resumeTimer);
          // Resumed through the consumer, not the batch's own resume: that one belongs to the
          // consumer session that fetched the batch, which a rejoin or restart may have replaced.
          owned.resumeTimer = clock.setTimeout(
            () => {
              if (assignment.get(tp)?.tracker === tracker)
                this.deps.resumePartition(batch.topic, batch.partition);
            },
            wait - DUE_LEAD_MS,
            { unref: true },
          );
          return;
        }
        // Due within the lead: taken now and held until due, in offset order (the due queue for a
        // retry tier, the forwarder for a delay bucket), so no batch waits here.
        holdUntil = wait > 0 ? clock.now() + wait : 0;
      }
      const size = WorkItem.sizeOf(record);
      // Tenants: the job's tenant is told before it waits for room (it may be deferred instead).
      let told: WorkItem | undefined;
      if (this.deps.fairness && !delayed) {
        told = new WorkItem(batch.topic, batch.partition, record, tier, tracker, this.seq(), clock.now());
        const telling = this.deps.fairness.resolve(told);
        if (telling) {
          // Its writer schema is fetched first (once per schema): the tenant is in the data.
          resolve();
          active = false;
          if (!(await this.heartbeating(batch, telling, current))) return;
        }
        active = false;
        const deferred =
          tier === 0 && this.deferral ? await this.deferred(told, batch, current, resolve) : false;
        if (deferred === undefined) return;
        if (deferred) {
          resolved = record.offset;
          continue;
        }
      }
      // Room in the buffer, and room in the partition's offset map: a job accepted beyond what the
      // map can describe could not be recorded as done out of order (offset-map.ts).
      while (!buffer.hasRoom(size) || this.beyondMap(tracker, offset) || this.overShare(tracker)) {
        resolve();
        active = false;
        await buffer.waitForRoom(1000);
        if (!current()) return;
        // Rejects when the group rebalances, so the client can rejoin.
        await batch.heartbeat();
      }
      const item = told ?? new WorkItem(batch.topic, batch.partition, record, tier, tracker, this.seq(), now);
      tracker.accept(offset);
      buffer.add(item);
      pending.set(item, true);
      resolved = record.offset;
      if (delayed) {
        this.deps.delays.add(item);
        continue;
      }
      if (holdUntil > 0 || this.deps.due.holding(tp)) {
        this.deps.due.hold(item, holdUntil);
        continue;
      }
      if (tier === 0) this.deps.parking?.arrived(item);
      dispatcher.add(item);
      dispatcher.pump();
    }
    resolve();
    // Offsets the fetch covered without a job (transaction markers, aborted records) are consumed too.
    if (current()) tracker.skipTo(Number(batch.lastOffset) + 1);
    if (tier === 0 && current()) this.deps.parking?.passed(batch.partition);
    await batch.heartbeat();
  }
}
