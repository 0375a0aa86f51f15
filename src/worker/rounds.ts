import type { RoutedRecord } from '../failure/router.js';
import type { Logger } from '../observability/logger.js';
import type { OffsetCommit, OutgoingRecord, TopicRecords, TransactionPort } from '../ports.js';
import { backoffDelay, retryPolicies } from '../timing/backoff.js';
import { type Clock, sleep } from '../timing/clock.js';
import type { PartitionTracker } from './partition-tracker.js';
import { tpKey, type WorkItem } from './work-item.js';

/** A round is committed before the interval when its partition staged this many records... */
export const ROUND_MAX_RECORDS = 5000;
/** ...or this many bytes of values (kafkajs sends a round's records in one request per broker). */
export const ROUND_MAX_BYTES = 8 * 1024 * 1024;

/** What one partition's next round holds. */
interface StagedRound {
  readonly records: Map<string, OutgoingRecord[]>;
  count: number;
  bytes: number;
  /** Told whether the round committed (idempotency done markers wait for it). */
  readonly after: ((committed: boolean) => void)[];
}

/**
 * Exactly-once rounds (`exactlyOnce`; docs/architecture.md, "Exactly-once rounds"). A job that
 * reaches its outcome does not write anything itself: its writes (follow-ups, tier or DLQ record,
 * a delayed job moved on) are staged here in the same tick its offset is marked done, so every
 * snapshot the committer takes — commit point, offset map, staged records — agrees. The committer
 * then publishes each partition's staged records and its offset in one transaction. A round that
 * does not commit leaves its partition's tracker broken: nothing of it is committed again, and the
 * core gives the partition up so its jobs run again from the committed offset.
 */
export class TransactionRounds {
  private readonly staged = new Map<PartitionTracker, StagedRound>();
  private readonly broken = new WeakSet<PartitionTracker>();

  constructor(
    readonly deps: {
      port: TransactionPort;
      clock: Clock;
      logger: Logger;
      random: () => number;
      /** A partition's round reached its size limit: commit sooner than the interval. */
      full: () => void;
      /** The ownership of this tracker (of partition `tp`) is still this worker's current one. */
      current: (tp: string, tracker: PartitionTracker) => boolean;
      /** A round of partition `tp` did not commit: its jobs must run again (the core rejoins). */
      giveUp: (tp: string) => void;
    },
  ) {}

  /** Adds a record to what the item writes when it reaches its outcome (router, delay forwarder). */
  static add(item: WorkItem, topic: string, message: OutgoingRecord): void {
    const write = { topic, messages: [message] };
    if (item.writes) item.writes.push(write);
    else item.writes = [write];
  }

  /** The item's writes were published with a parking write (round-parking.ts): not staged again. */
  static published(item: WorkItem): void {
    const onRound = item.onRound;
    item.writes = undefined;
    item.onRound = undefined;
    onRound?.(true);
  }

  /** The router's staging (it sees work items as records). */
  readonly stageRouted = (item: RoutedRecord, topic: string, message: OutgoingRecord): void =>
    TransactionRounds.add(item as WorkItem, topic, message);

  /**
   * The item reached its outcome; `done`: its offset was just marked done (its writes join its
   * partition's next round), else it was not (partition lost: its round will not come).
   */
  settled(item: WorkItem, done: boolean): void {
    if (done) this.stage(item);
    else item.onRound?.(false);
  }

  /** The item's offset was just marked done: its writes join its partition's next round. */
  private stage(item: WorkItem): void {
    const { writes, onRound } = item;
    item.writes = undefined;
    item.onRound = undefined;
    if (!writes && !onRound) return;
    if (this.broken.has(item.tracker)) {
      onRound?.(false);
      return;
    }
    let round = this.staged.get(item.tracker);
    if (!round) {
      round = { records: new Map(), count: 0, bytes: 0, after: [] };
      this.staged.set(item.tracker, round);
    }
    if (onRound) round.after.push(onRound);
    for (const { topic, messages } of writes ?? []) {
      const list = round.records.get(topic);
      if (list) list.push(...messages);
      else round.records.set(topic, [...messages]);
      round.count += messages.length;
      for (const m of messages) round.bytes += (m.value?.length ?? 0) + 64;
    }
    if (round.count >= ROUND_MAX_RECORDS || round.bytes >= ROUND_MAX_BYTES) this.deps.full();
  }

  /** True when a round of this ownership failed: it commits nothing more. */
  isBroken(tracker: PartitionTracker): boolean {
    return this.broken.has(tracker);
  }

  hasStaged(tracker: PartitionTracker): boolean {
    return this.staged.has(tracker);
  }

  /**
   * Commits one partition's round: what it staged since the last one, and `offset`. Taken in the
   * same tick as the committer reads the commit point. Resolves false when it did not commit.
   */
  commit(tracker: PartitionTracker, offset: OffsetCommit): Promise<boolean> {
    return this.commitWith(tracker, offset, []).then(
      () => true,
      () => false,
    );
  }

  /**
   * A round of the partition now, carrying `extra` after what it staged (strict key order's
   * parking writes and the job writes they carry: round-parking.ts), with `offset` read in this
   * tick (the committer's `commitNow`). Without an offset (none to commit yet) what it staged waits
   * for the next round and `extra` goes alone. Resolves with the offsets `extra`'s records got;
   * rejects when it did not commit (the partition is given up, as for any round).
   */
  commitNow(
    tracker: PartitionTracker,
    offset: OffsetCommit | undefined,
    extra: readonly TopicRecords[],
  ): Promise<number[]> {
    if (this.broken.has(tracker))
      return Promise.reject(new Error(`${tpKey(tracker.topic, tracker.partition)}: its round failed`));
    return this.commitWith(tracker, offset, extra);
  }

  private commitWith(
    tracker: PartitionTracker,
    offset: OffsetCommit | undefined,
    extra: readonly TopicRecords[],
  ): Promise<number[]> {
    const round = offset ? this.staged.get(tracker) : undefined;
    if (round) this.staged.delete(tracker);
    const records: TopicRecords[] = round
      ? [...round.records].map(([topic, messages]) => ({ topic, messages }))
      : [];
    const skip = records.reduce((n, r) => n + r.messages.length, 0);
    records.push(...extra);
    const after = (committed: boolean) => {
      for (const f of round?.after ?? []) f(committed);
    };
    const { topic, partition } = tracker;
    return this.deps.port.commitRound({ topic, partition, records, offset }).then(
      (offsets) => {
        after(true);
        return offsets.slice(skip);
      },
      (error: unknown) => {
        this.broken.add(tracker);
        // Later rounds of this ownership would commit offsets past the lost one: dropped too.
        const later = this.staged.get(tracker);
        this.staged.delete(tracker);
        after(false);
        for (const f of later?.after ?? []) f(false);
        this.deps.logger.error(
          { err: error, topic, partition, records: records.length },
          'exactly-once round not committed: its jobs run again from the committed offset (rejoining the group)',
        );
        this.deps.giveUp(tpKey(topic, partition));
        throw error;
      },
    );
  }

  /**
   * Takes the transactional ids of new partitions before their committed offsets are read
   * (assignment.ts `beforeReconcile`): an earlier owner's open round is aborted first, so the offset
   * read cannot move under this owner. Again until it succeeds, while the ownership is current.
   */
  async fenceAll(trackers: readonly PartitionTracker[]): Promise<void> {
    await Promise.all(trackers.map((t) => this.fenced(t)));
  }

  /**
   * Resolves once this ownership took its partition's transactional id (once per ownership: the
   * assignment's fence, or the first asked for; strict key order's parking read waits for it).
   */
  fenced(tracker: PartitionTracker): Promise<void> {
    let fence = this.fences.get(tracker);
    if (!fence) {
      fence = this.fence(tracker);
      this.fences.set(tracker, fence);
    }
    return fence;
  }

  private readonly fences = new WeakMap<PartitionTracker, Promise<void>>();

  private async fence(tracker: PartitionTracker): Promise<void> {
    const tp = tpKey(tracker.topic, tracker.partition);
    for (let n = 0; this.deps.current(tp, tracker); n++) {
      try {
        await this.deps.port.fence(tracker.topic, tracker.partition);
        return;
      } catch (error) {
        this.deps.logger.warn(
          { err: error, topic: tracker.topic, partition: tracker.partition },
          'could not take the transactional id of a new partition; retrying',
        );
        await sleep(this.deps.clock, backoffDelay(retryPolicies.transaction, n, this.deps.random));
      }
    }
  }

  /** A partition (`topic:partition`) was revoked: what it staged is dropped (its jobs run again). */
  released(tp: string): void {
    const cut = tp.lastIndexOf(':');
    const topic = tp.slice(0, cut);
    const partition = Number(tp.slice(cut + 1));
    for (const [tracker, round] of this.staged) {
      if (tracker.topic !== topic || tracker.partition !== partition) continue;
      this.staged.delete(tracker);
      for (const f of round.after) f(false);
    }
    this.deps.port
      .release(topic, partition)
      .catch((error: unknown) =>
        this.deps.logger.warn({ err: error, topic, partition }, 'could not close a transactional producer'),
      );
  }
}

/** The rounds of an `exactlyOnce` worker (undefined otherwise, or without a transaction port). */
export function exactlyOnceRounds(
  core: {
    options: { exactlyOnce: boolean };
    transactions?: TransactionPort | undefined;
    clock: Clock;
    logger: Logger;
  },
  random: () => number,
  hooks: Pick<TransactionRounds['deps'], 'full' | 'current' | 'giveUp'>,
): TransactionRounds | undefined {
  if (!core.options.exactlyOnce) return undefined;
  if (!core.transactions) throw new Error('exactlyOnce needs a transaction port');
  const { transactions: port, clock, logger } = core;
  return new TransactionRounds({ port, clock, logger, random, ...hooks });
}
