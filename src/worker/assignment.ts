import type { Logger } from '../observability/logger.js';
import type { CommittedOffset, ConsumerPort } from '../ports.js';
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
  /**
   * False from a join until the group's committed offset was checked (assign → reconcile): no
   * commit is made for the partition before, since a kept tracker may turn out to be stale.
   */
  verified: boolean;
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
      /**
       * Partitions this worker did not own before: a retry-tier partition paused until due by an
       * earlier ownership stays paused in the client across a rejoin, so it must be resumed.
       */
      onNewOwnership: (partitions: { topic: string; partition: number }[]) => void;
      /**
       * Runs before the committed offsets of new partitions are read (exactly once: their
       * transactional ids are taken, aborting an earlier owner's open round).
       */
      beforeReconcile?: ((fresh: readonly PartitionTracker[]) => Promise<void>) | undefined;
      /** A kept partition's other state is as this ownership left it (strict order: its parking partition). */
      unchanged?: (topic: string, partition: number, continuous: boolean) => Promise<boolean>;
    },
  ) {}

  get(tp: string): OwnedPartition | undefined {
    return this.owned.get(tp);
  }

  /**
   * Like `owns`, but after a join waits until the partition is known to be still this ownership's
   * (`reconcile`): a job of a partition taken afresh must not reach an outcome meanwhile.
   */
  confirm(item: WorkItem): boolean | Promise<boolean> {
    const owned = this.owned.get(item.tp);
    if (!owned || owned.tracker !== item.tracker) return false;
    if (owned.verified) return true;
    return owned.ready.then(() => this.owns(item));
  }

  /** True while the item's partition is owned by the same ownership that accepted it. */
  owns(item: WorkItem): boolean {
    return this.owned.get(item.tp)?.tracker === item.tracker;
  }

  partitions(): OwnedPartition[] {
    return [...this.owned.values()];
  }

  /**
   * A join completed: partitions no longer assigned are revoked, new ones get trackers and their
   * offset maps. A partition kept across the rebalance keeps its tracker (offsets it re-fetches are
   * not run twice) only if nobody committed it meanwhile: a member that was late to rejoin may have
   * missed a whole generation in which another member moved the partition on.
   */
  assign(assignment: Readonly<Record<string, readonly number[]>>, continuous = false): Promise<void> {
    const next = new Set<string>();
    for (const [topic, partitions] of Object.entries(assignment))
      for (const p of partitions) next.add(tpKey(topic, p));
    for (const tp of [...this.owned.keys()]) if (!next.has(tp)) this.revoke(tp);
    const fresh: PartitionTracker[] = [];
    const kept: PartitionTracker[] = [];
    for (const [topic, partitions] of Object.entries(assignment)) {
      for (const partition of partitions) {
        const owned = this.owned.get(tpKey(topic, partition));
        if (owned) {
          owned.verified = false;
          kept.push(owned.tracker);
          continue;
        }
        const tracker = new PartitionTracker(topic, partition);
        fresh.push(tracker);
        this.owned.set(tpKey(topic, partition), { tracker, ready: Promise.resolve(), verified: false });
      }
    }
    if (fresh.length > 0)
      this.deps.onNewOwnership(fresh.map((t) => ({ topic: t.topic, partition: t.partition })));
    if (fresh.length === 0 && kept.length === 0) return Promise.resolve();
    const ready = this.reconcile(fresh, kept, continuous);
    for (const t of [...fresh, ...kept]) {
      const owned = this.owned.get(tpKey(t.topic, t.partition));
      if (owned) owned.ready = ready;
    }
    return ready;
  }

  /** Reads the group's committed offsets: offset maps for new partitions, continuity for kept ones. */
  private async reconcile(
    fresh: PartitionTracker[],
    kept: PartitionTracker[],
    continuous: boolean,
  ): Promise<void> {
    if (fresh.length > 0) await this.deps.beforeReconcile?.(fresh);
    const topics = [...new Set([...fresh, ...kept].map((t) => t.topic))];
    let committed: CommittedOffset[] | undefined;
    try {
      // A member that stayed in the group needs no commit of a partition it kept: nobody else had it.
      if (fresh.length > 0 || !continuous) committed = await this.deps.consumer.committed(topics);
    } catch (error) {
      this.deps.logger.warn(
        { err: error },
        'could not read committed offsets; out-of-order completions may run again',
      );
    }
    const find = (t: PartitionTracker) =>
      committed?.find((c) => c.topic === t.topic && c.partition === t.partition);
    const stateOf = (c: CommittedOffset | undefined) =>
      c && c.offset >= 0 ? `${c.offset}|${c.metadata ?? ''}` : '-1|';
    const load = (t: PartitionTracker) => {
      const c = find(t);
      t.baseline = stateOf(c);
      if (c && c.offset >= 0 && c.metadata) t.preloadedDone = decodeOffsetMap(c.offset, c.metadata);
    };
    const verified = (t: PartitionTracker) => {
      const owned = this.owned.get(tpKey(t.topic, t.partition));
      if (owned?.tracker === t) owned.verified = true;
    };
    for (const t of fresh) {
      load(t);
      verified(t);
    }
    for (const t of kept) {
      const tp = tpKey(t.topic, t.partition);
      if (this.owned.get(tp)?.tracker !== t) continue;
      // Still ours if the group's commit is where we started or one we sent (even unacknowledged).
      const state = stateOf(find(t));
      const same = continuous || (committed && (state === t.baseline || t.sent.includes(state)));
      if (same && (await (this.deps.unchanged?.(t.topic, t.partition, continuous) ?? true))) {
        verified(t);
        continue;
      }
      if (this.owned.get(tp)?.tracker !== t) continue;
      // Someone else committed it meanwhile (or we cannot tell): start this ownership afresh.
      this.revoke(tp);
      const tracker = new PartitionTracker(t.topic, t.partition);
      // Exactly once: fenced first and its commit read again after, as a new partition's (sim
      // seed 14580: a commit read before another owner's last round went backwards); the intake
      // waits for that (`ready`).
      const fence = this.deps.beforeReconcile;
      const taken = () => {
        load(tracker);
        verified(tracker);
      };
      if (!fence) taken();
      const ready = fence
        ? fence([tracker])
            .then(() => this.deps.consumer.committed([t.topic]))
            .then(
              (c) => (committed = c),
              () => undefined,
            )
            .then(taken)
        : Promise.resolve();
      this.owned.set(tp, { tracker, ready, verified: !fence });
      this.deps.onNewOwnership([{ topic: t.topic, partition: t.partition }]);
      await ready;
      this.deps.logger.info(
        { tp },
        'partition moved on while this worker was out of the group; taking it afresh',
      );
    }
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
}
