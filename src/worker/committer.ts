import type { Logger } from '../observability/logger.js';
import type { QueueMetrics } from '../observability/metrics.js';
import type { ConsumerPort, OffsetCommit, TopicRecords } from '../ports.js';
import type { Assignment } from './assignment.js';
import { encodeOffsetMap } from './offset-map.js';
import type { PartitionTracker } from './partition-tracker.js';
import type { TransactionRounds } from './rounds.js';
import type { RunState } from './run-state.js';
import { tpKey } from './work-item.js';

/**
 * Commits each owned partition's commit point (the first accepted offset not yet done) with the
 * offset map of the jobs done above it. Never backwards, never for a partition not owned by the
 * ownership that computed it. One commit is in flight at a time and at most one waits behind it
 * (it reads the commit points when it starts, so it covers every request made meanwhile): slow
 * commits while a coordinator moves cannot pile up a queue that a rebalance's commit would wait behind.
 */
export class Committer {
  private inFlight: Promise<void> | undefined;
  private queued: { duringRebalance: boolean; promise: Promise<void> } | undefined;

  constructor(
    private readonly deps: {
      consumer: ConsumerPort;
      assignment: Assignment;
      state: RunState;
      logger: Logger;
      metrics: QueueMetrics;
      group: string;
      metadataMaxChars: number;
      onCommitted: (offsets: OffsetCommit[]) => void;
      /**
       * A commit was refused because this member is not in the group's generation; `round` says
       * which assignment it was sent under (a refusal of an earlier one is stale).
       */
      onFenced: (error: unknown, round: number) => void;
      /** The current assignment round (core.ts `joinRound`). */
      round: () => number;
      /** Exactly once: each partition's commit is a transaction with its staged writes (rounds.ts). */
      rounds?: TransactionRounds | undefined;
    },
  ) {}

  /**
   * Commits what moved. While the group rebalances only the drain before rejoining commits
   * (`duringRebalance`): after our JoinGroup the old generation is gone.
   */
  commit(opts: { duringRebalance?: boolean } = {}): Promise<void> {
    const duringRebalance = opts.duringRebalance === true;
    if (!this.inFlight) return this.start(duringRebalance);
    if (this.queued) {
      this.queued.duringRebalance ||= duringRebalance;
      return this.queued.promise;
    }
    const queued = { duringRebalance, promise: Promise.resolve() };
    queued.promise = this.inFlight
      .catch(() => undefined)
      .then(() => {
        this.queued = undefined;
        return this.start(queued.duringRebalance);
      });
    this.queued = queued;
    return queued.promise;
  }

  private start(duringRebalance: boolean): Promise<void> {
    const inFlight = this.once(duringRebalance).finally(() => {
      if (this.inFlight === inFlight) this.inFlight = undefined;
    });
    this.inFlight = inFlight;
    return inFlight;
  }

  private async once(duringRebalance: boolean): Promise<void> {
    const { consumer, assignment, state, logger } = this.deps;
    if (state.rebalancing && !duringRebalance) return;
    const offsets: OffsetCommit[] = [];
    const trackers: PartitionTracker[] = [];
    const rounds = this.deps.rounds;
    for (const { tracker, verified } of assignment.partitions()) {
      if (!verified || rounds?.isBroken(tracker)) continue;
      const offset = this.pointOf(tracker);
      if (offset === undefined) continue;
      const last = tracker.lastCommit;
      if (
        last &&
        offset.offset === last.point &&
        offset.metadata === last.metadata &&
        !rounds?.hasStaged(tracker)
      )
        continue;
      offsets.push(offset);
      trackers.push(tracker);
      tracker.noteSent(offset.offset, offset.metadata);
    }
    if (offsets.length === 0) return;
    if (rounds) return this.commitRounds(rounds, offsets, trackers);
    const round = this.deps.round();
    try {
      await consumer.commit(offsets);
      // Recorded on the tracker that computed it: a partition revoked meanwhile (and maybe
      // assigned again, with a new tracker) does not take this commit for its own.
      offsets.forEach((o, i) => {
        trackers[i]!.lastCommit = { point: o.offset, metadata: o.metadata };
      });
      this.deps.onCommitted(offsets);
    } catch (error) {
      if (isFenced(error)) {
        // The coordinator no longer counts this member in the current generation (it was too slow
        // to rejoin, or its session expired): its partitions belong to others now.
        this.deps.onFenced(error, round);
        return;
      }
      logger.warn(
        { err: error, offsets: offsets.length },
        'offset commit failed; it is retried at the next interval',
      );
    }
  }

  /** The partition's commit now (point and offset map), if it may be committed. */
  private pointOf(tracker: PartitionTracker): OffsetCommit | undefined {
    const { logger, metrics, group, metadataMaxChars } = this.deps;
    const point = tracker.commitPoint();
    if (point === undefined) return undefined;
    const last = tracker.lastCommit;
    // Never behind this ownership's last commit, nor behind the group's commit it began from:
    // with exactly once the intake skips the records below that one (read after the fence), and
    // a fetch that began before the fence may have started lower (seed 38906).
    if (point < tracker.baseOffset || (last && point < last.point)) return undefined;
    const metadata = encodeOffsetMap(point, tracker.doneAbove(), metadataMaxChars);
    if (metadata === undefined) {
      // The intake keeps every partition's map within the limit; if one still does not fit, keep
      // the last commit rather than lose which jobs finished.
      logger.error(
        { topic: tracker.topic, partition: tracker.partition, point },
        'offset map too large; partition not committed',
      );
      return undefined;
    }
    metrics.offsetMapBytes.set(
      { topic: tracker.topic, partition: String(tracker.partition), group },
      Buffer.byteLength(metadata),
    );
    return { topic: tracker.topic, partition: tracker.partition, offset: point, metadata };
  }

  /**
   * Exactly once: one transaction per partition (its staged writes and its offset), all partitions
   * at once. Each round was taken in the tick its commit point was read. A round that fails breaks
   * its partition (rounds.ts); the others count as committed.
   */
  private async commitRounds(
    rounds: TransactionRounds,
    offsets: OffsetCommit[],
    trackers: PartitionTracker[],
  ): Promise<void> {
    const results = await Promise.all(offsets.map((o, i) => rounds.commit(trackers[i]!, o)));
    // A partition whose later round (made now, `commitNow`) ended meanwhile is not told again.
    const committed = offsets.filter((o, i) => results[i] && this.committed(trackers[i]!, o));
    if (committed.length > 0) this.deps.onCommitted(committed);
  }

  /**
   * Records a round's commit as the partition's last, unless a later one (a round made now) is
   * recorded already: its rounds commit in turn, but the committer waits for all its partitions.
   */
  private committed(tracker: PartitionTracker, o: OffsetCommit): boolean {
    if (tracker.lastCommit && tracker.lastCommit.point > o.offset) return false;
    tracker.lastCommit = { point: o.offset, metadata: o.metadata };
    return true;
  }

  /**
   * Exactly once, strict key order: a round of this partition now, out of the committer's turn,
   * carrying `extra` (parking writes and the job writes they carry, round-parking.ts) after what
   * it staged, with its commit point read in this tick. Resolves with `extra`'s offsets.
   */
  async commitNow(tracker: PartitionTracker, extra: readonly TopicRecords[]): Promise<number[]> {
    const rounds = this.deps.rounds;
    if (!rounds) throw new Error('commitNow needs exactly-once rounds');
    const owned = this.deps.assignment.get(tpKey(tracker.topic, tracker.partition));
    const offset = owned?.tracker === tracker && owned.verified ? this.pointOf(tracker) : undefined;
    if (offset) tracker.noteSent(offset.offset, offset.metadata);
    const placed = await rounds.commitNow(tracker, offset, extra);
    if (offset && this.committed(tracker, offset)) this.deps.onCommitted([offset]);
    return placed;
  }
}

const FENCED = new Set(['ILLEGAL_GENERATION', 'UNKNOWN_MEMBER_ID', 'FENCED_INSTANCE_ID']);

/** A refusal that means this member lost its partitions (kafkajs protocol error types, maybe wrapped). */
function isFenced(error: unknown): boolean {
  let e = error as { type?: unknown; originalError?: unknown; cause?: unknown } | undefined;
  for (let depth = 0; e && depth < 4; depth++) {
    if (typeof e.type === 'string' && FENCED.has(e.type)) return true;
    e = (e.originalError ?? e.cause) as typeof e;
  }
  return false;
}
