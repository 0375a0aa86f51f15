import type { Logger } from '../observability/logger.js';
import type { ConsumerPort } from '../ports.js';
import type { Clock, TimerHandle } from '../timing/clock.js';
import { decodeOffsetMap } from './offset-map.js';
import { PartitionTracker } from './partition-tracker.js';
import { tpKey, type WorkItem } from './work-item.js';

/** A partition this worker owns in the current assignment. */
export interface OwnedPartition {
  readonly tracker: PartitionTracker;
  /** Resolves once the previous owner's offset map (commit metadata) is loaded. */
  ready: Promise<void>;
  /** Resumes a retry-tier partition paused until its head is due. */
  resumeTimer?: TimerHandle | undefined;
}

/**
 * Which partitions this worker owns, each with a tracker made for this ownership: a partition
 * revoked and assigned again gets a new tracker, so nothing of the old ownership (accepted
 * offsets, the last commit, a job finishing late) can count for the new one.
 */
export class Assignment {
  private readonly owned = new Map<string, OwnedPartition>();

  constructor(
    private readonly deps: {
      consumer: ConsumerPort;
      clock: Clock;
      logger: Logger;
      /** A partition left: drop its waiting jobs (running ones finish uncommitted). */
      onRevoke: (tp: string) => void;
    },
  ) {}

  get(tp: string): OwnedPartition | undefined {
    return this.owned.get(tp);
  }

  /** True while the item's partition is owned by the same ownership that accepted it. */
  owns(item: WorkItem): boolean {
    return this.owned.get(item.tp)?.tracker === item.tracker;
  }

  partitions(): OwnedPartition[] {
    return [...this.owned.values()];
  }

  /**
   * The partition a fetched batch belongs to. kafkajs may hand over a batch before its join event
   * reaches us; then the partition is taken as owned now (the join event keeps the same tracker).
   */
  ensure(topic: string, partition: number): OwnedPartition {
    const tp = tpKey(topic, partition);
    let owned = this.owned.get(tp);
    if (!owned) {
      owned = { tracker: new PartitionTracker(topic, partition), ready: Promise.resolve() };
      this.owned.set(tp, owned);
    }
    return owned;
  }

  /** A join completed: partitions no longer assigned are revoked, new ones get trackers and their offset maps. */
  assign(assignment: Readonly<Record<string, readonly number[]>>): void {
    const next = new Set<string>();
    for (const [topic, partitions] of Object.entries(assignment))
      for (const p of partitions) next.add(tpKey(topic, p));
    for (const tp of [...this.owned.keys()]) if (!next.has(tp)) this.revoke(tp);
    const fresh: PartitionTracker[] = [];
    for (const [topic, partitions] of Object.entries(assignment)) {
      for (const partition of partitions) {
        if (this.owned.has(tpKey(topic, partition))) continue;
        const tracker = new PartitionTracker(topic, partition);
        fresh.push(tracker);
        this.owned.set(tpKey(topic, partition), { tracker, ready: Promise.resolve() });
      }
    }
    if (fresh.length === 0) return;
    const ready = this.loadOffsetMaps(fresh);
    for (const t of fresh) this.owned.get(tpKey(t.topic, t.partition))!.ready = ready;
  }

  /** Revoked: its waiting jobs are dropped; running ones finish but cannot be committed by us. */
  revoke(tp: string): void {
    const owned = this.owned.get(tp);
    if (!owned) return;
    this.deps.clock.clearTimeout(owned.resumeTimer);
    this.owned.delete(tp);
    this.deps.onRevoke(tp);
  }

  revokeAll(): void {
    for (const tp of [...this.owned.keys()]) this.revoke(tp);
  }

  /** Stops every pending resume of a paused tier partition (shutdown). */
  clearTimers(): void {
    for (const owned of this.owned.values()) this.deps.clock.clearTimeout(owned.resumeTimer);
  }

  /** Reads the committed offset maps of newly assigned partitions (best effort: a failure only costs re-runs). */
  private async loadOffsetMaps(trackers: PartitionTracker[]): Promise<void> {
    const topics = [...new Set(trackers.map((t) => t.topic))];
    try {
      for (const c of await this.deps.consumer.committed(topics)) {
        const tracker = trackers.find((t) => t.topic === c.topic && t.partition === c.partition);
        if (!tracker || c.offset < 0 || !c.metadata) continue;
        tracker.preloadedDone = decodeOffsetMap(c.offset, c.metadata);
      }
    } catch (error) {
      this.deps.logger.warn(
        { err: error },
        'could not read committed offset maps; out-of-order completions may run again',
      );
    }
  }
}
