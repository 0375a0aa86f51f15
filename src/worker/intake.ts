import { HEADERS } from '../headers.js';
import type { FetchedBatch } from '../ports.js';
import { type Clock, sleep, type TimerHandle } from '../timing/clock.js';
import type { Assignment } from './assignment.js';
import type { Dispatcher } from './dispatcher.js';
import type { DueQueue } from './due-queue.js';
import { offsetMapCapacity } from './offset-map.js';
import type { PartitionTracker } from './partition-tracker.js';
import type { RunState } from './run-state.js';
import { tpKey, WorkItem } from './work-item.js';

/** How long before its due time a retry-tier record is fetched and held (covers the fetch latency). */
const DUE_LEAD_MS = 300;

/**
 * Accepted, unfinished jobs and their bytes, against `maxBufferedJobs` / `maxBufferedBytes`. The
 * intake waits for room (heartbeating) instead of buffering beyond them.
 */
export class JobBuffer {
  jobs = 0;
  bytes = 0;
  private waiters: (() => void)[] = [];

  constructor(
    private readonly maxJobs: number,
    private readonly maxBytes: number,
    private readonly clock: Clock,
  ) {}

  /** Room for one more job of `size` bytes (a job larger than the cap alone is let in when the buffer is empty). */
  hasRoom(size: number): boolean {
    return this.jobs < this.maxJobs && (this.bytes + size <= this.maxBytes || this.jobs === 0);
  }

  add(item: WorkItem): void {
    this.jobs++;
    this.bytes += item.size;
  }

  release(item: WorkItem): void {
    this.jobs--;
    this.bytes -= item.size;
    this.wake();
  }

  /** Resolves when something was released, or after `ms`. */
  waitForRoom(ms: number): Promise<void> {
    return new Promise((resolve) => {
      let t: TimerHandle | undefined;
      const done = () => {
        this.clock.clearTimeout(t);
        // A waiter that timed out leaves the list (a blocked batch waits again and again).
        const i = this.waiters.indexOf(done);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve();
      };
      t = this.clock.setTimeout(done, ms, { unref: true });
      this.waiters.push(done);
    });
  }

  wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}

/**
 * Takes fetched batches into the worker: skips offsets already accepted in this ownership (a
 * re-fetch after a rejoin) or finished by the previous owner (its offset map), pauses a retry-tier
 * partition until its head is due, waits while the buffer is full or a partition's offset map is
 * at its limit, and hands accepted jobs to the dispatcher.
 */
export class Intake {
  private seq = 0;
  private readonly mapCapacity: number;
  /** Parking loads known to have ended (a batch then need not wait on them). */
  private readonly loaded = new WeakSet<Promise<void>>();

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
          }
        | undefined;
      /** A batch of a topic this worker does not consume arrived (it was paused, not taken). */
      unknownTopic: (topic: string) => void;
    },
  ) {
    this.mapCapacity = offsetMapCapacity(deps.metadataMaxChars);
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
   * Waits until the partition's parked keys are known (strict key order). A big parking partition
   * takes seconds to read, one that does not answer takes until it does: the batch heartbeats
   * meanwhile, else the group would expel this member and the next owner would start over.
   */
  private async parkedKeysKnown(batch: FetchedBatch, current: () => boolean): Promise<boolean> {
    const ready = this.deps.parking?.ready(batch.partition);
    if (!ready || this.loaded.has(ready)) return true;
    for (;;) {
      const wait = new AbortController();
      const known = await Promise.race([
        ready.then(() => true),
        sleep(this.deps.clock, 1000, wait.signal).then(() => false),
      ]);
      wait.abort();
      if (known) {
        this.loaded.add(ready);
        return true;
      }
      if (!current()) return false;
      // Rejects when the group rebalances, so the client can rejoin.
      await batch.heartbeat();
    }
  }

  async onBatch(batch: FetchedBatch): Promise<void> {
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
    await owned.ready;
    const tracker = owned.tracker;
    const current = () => batch.isActive() && state.running && assignment.get(tp)?.tracker === tracker;
    if (tier === 0 && !(await this.parkedKeysKnown(batch, current))) return;
    // The fetch position moves once per stretch of accepted records, not per record (kafkajs
    // converts every resolved offset to a Long): before any wait, any return, and at the end.
    let resolved: string | undefined;
    const resolve = () => {
      if (resolved !== undefined) batch.resolveOffset(resolved);
      resolved = undefined;
    };
    for (const record of batch.records) {
      if (!current()) return resolve();
      const offset = Number(record.offset);
      if (tracker.seen(offset)) {
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
      // Room in the buffer, and room in the partition's offset map: a job accepted beyond what the
      // map can describe could not be recorded as done out of order (offset-map.ts).
      while (!buffer.hasRoom(size) || this.beyondMap(tracker, offset)) {
        resolve();
        await buffer.waitForRoom(1000);
        if (!current()) return;
        // Rejects when the group rebalances, so the client can rejoin.
        await batch.heartbeat();
      }
      const item = new WorkItem(batch.topic, batch.partition, record, tier, tracker, this.seq++, clock.now());
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
