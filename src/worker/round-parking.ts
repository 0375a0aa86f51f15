import type { z } from 'zod';
import type { FetchedRecord, OutgoingRecord, ParkingPort, TopicRecords } from '../ports.js';
import type { Assignment } from './assignment.js';
import type { Committer } from './committer.js';
import type { PartitionTracker } from './partition-tracker.js';
import type { TransactionRounds } from './rounds.js';
import { tpKey } from './work-item.js';

/**
 * The parking topic inside exactly-once rounds (`exactlyOnce` with strict key order;
 * docs/architecture.md "Exactly-once rounds"). Reads go to the parking port as they are; each
 * write is a round of the job-topic partition it belongs to, made now (committer.ts `commitNow`):
 * under that partition's transactional id, after what the round staged and with its commit point,
 * so a key's parking records, the jobs' writes they carry (a tier record with the park of its key,
 * a released job's follow-ups with its tombstone) and the follow-ups of the key's earlier jobs
 * become visible together, in order, or not at all. Fencing is the round's: the owner of job-topic
 * partition p took p's transactional id before it read the group's committed offset, and before it
 * reads the parking partition, so a zombie's parking write is refused like its rounds.
 */
export class RoundParkingPort implements ParkingPort {
  /** The ownership (tracker) each parking partition is written for, from its `fence` on. */
  private readonly owners = new Map<number, PartitionTracker>();

  constructor(
    private readonly base: ParkingPort,
    private readonly deps: {
      /** The parking topic. */
      topic: string;
      /** The current ownership of job-topic partition p. */
      trackerOf: (partition: number) => PartitionTracker | undefined;
      /** False once a round of the ownership failed (it commits nothing more). */
      broken: (tracker: PartitionTracker) => boolean;
      /** Resolves once the ownership took its partition's transactional id. */
      fenced: (tracker: PartitionTracker) => Promise<void>;
      /** A round of the partition now, carrying `extra`; resolves with `extra`'s offsets. */
      commitNow: (tracker: PartitionTracker, extra: readonly TopicRecords[]) => Promise<number[]>;
    },
  ) {}

  /** The port a worker uses: this one around `port` when it has exactly-once rounds. */
  static within(
    port: ParkingPort | undefined,
    rounds: TransactionRounds | undefined,
    topics: { main: string; parked: string },
    assignment: Pick<Assignment, 'get'>,
    committer: () => Pick<Committer, 'commitNow'>,
  ): ParkingPort | undefined {
    if (!port || !rounds) return port;
    return new RoundParkingPort(port, {
      topic: topics.parked,
      trackerOf: (p) => assignment.get(tpKey(topics.main, p))?.tracker,
      broken: (t) => rounds.isBroken(t),
      fenced: (t) => rounds.fenced(t),
      commitNow: (t, extra) => committer().commitNow(t, extra),
    });
  }

  scan(
    partition: number,
    from: number,
    onPage: (records: readonly FetchedRecord[], next: number) => void,
  ): Promise<number> {
    return this.base.scan(partition, from, onPage);
  }

  read(partition: number, offsets: readonly number[]): Promise<FetchedRecord[]> {
    return this.base.read(partition, offsets);
  }

  endOffset(partition: number): Promise<number> {
    return this.base.endOffset(partition);
  }

  /**
   * The fence of the ownership's rounds (the job-topic partition's transactional id, taken once per
   * ownership): the parking partition is read only after it, so no write of an earlier owner
   * (a zombie's round) lands after the read. Then this ownership writes.
   */
  async fence(partition: number): Promise<void> {
    const tracker = this.deps.trackerOf(partition);
    if (!tracker) throw new Error(`job-topic partition ${partition} is not owned`);
    await this.deps.fenced(tracker);
    if (this.deps.trackerOf(partition) !== tracker)
      throw new Error(`job-topic partition ${partition} left while it was fenced`);
    this.owners.set(partition, tracker);
  }

  holds(partition: number): boolean {
    const tracker = this.owners.get(partition);
    return tracker !== undefined && this.deps.trackerOf(partition) === tracker && !this.deps.broken(tracker);
  }

  release(partition: number): Promise<void> {
    this.owners.delete(partition);
    return Promise.resolve();
  }

  /**
   * Writes of one partition go together while its last one is under way (up to 1,000 records in
   * a round): a key's park, its parked jobs and their tombstones are many small writes.
   */
  write(
    partition: number,
    records: readonly OutgoingRecord[],
    carried: readonly TopicRecords[] = [],
  ): Promise<number[]> {
    const tracker = this.owners.get(partition);
    if (!tracker || !this.holds(partition))
      return Promise.reject(new Error(`parking partition ${partition} is not held by this ownership`));
    let batch = this.open.get(partition);
    if (!batch || batch.tracker !== tracker || batch.count >= MAX_BATCH) {
      const next: Batch = { tracker, count: 0, writes: [] };
      batch = next;
      this.open.set(partition, next);
      const run = (this.last.get(partition) ?? Promise.resolve()).then(() => this.flush(partition, next));
      this.last.set(partition, run);
      void run.then(() => {
        if (this.last.get(partition) === run) this.last.delete(partition);
      });
    }
    const open = batch;
    open.count += records.length;
    return new Promise((resolve, reject) => open.writes.push({ records, carried, resolve, reject }));
  }

  /** Writes of each partition not sent yet, and the last batch of each under way. */
  private readonly open = new Map<number, Batch>();
  private readonly last = new Map<number, Promise<void>>();

  /** One round for the batch's writes; each gets its records' offsets. Never rejects. */
  private async flush(partition: number, batch: Batch): Promise<void> {
    if (this.open.get(partition) === batch) this.open.delete(partition);
    const messages = batch.writes.flatMap((w) => w.records.map((r) => ({ ...r, partition })));
    try {
      if (!this.holds(partition) || this.owners.get(partition) !== batch.tracker)
        throw new Error(`parking partition ${partition} is not held by this ownership`);
      // The parking records first: their offsets are the ones asked for.
      const offsets = await this.deps.commitNow(batch.tracker, [
        { topic: this.deps.topic, messages },
        ...batch.writes.flatMap((w) => w.carried),
      ]);
      let i = 0;
      for (const w of batch.writes) {
        w.resolve(offsets.slice(i, i + w.records.length));
        i += w.records.length;
      }
    } catch (error) {
      for (const w of batch.writes) w.reject(error);
    }
  }
}

/** Records in one round of parking writes at most. */
const MAX_BATCH = 1000;

interface Batch {
  readonly tracker: PartitionTracker;
  count: number;
  readonly writes: {
    records: readonly OutgoingRecord[];
    carried: readonly TopicRecords[];
    resolve: (offsets: number[]) => void;
    reject: (error: unknown) => void;
  }[];
}

/**
 * Strict key order with `exactlyOnce` is refused for now: the simulation and the broker tests pass
 * (round-parking.ts above), but the full chaos run `exactly-once` with strict order, three brokers
 * and 20 SIGKILLs still showed follow-ups twice and out of key order (docs/guarantees.md).
 */
export const exactlyOnceFits = (
  o: {
    exactlyOnce: boolean;
    ordering: string;
    retry: { ordering: string; tiers: readonly number[] };
  },
  ctx: z.RefinementCtx,
) => {
  if (!o.exactlyOnce) return;
  if (o.retry.ordering === 'strict' && o.retry.tiers.length > 0 && o.ordering !== 'unordered')
    ctx.addIssue({
      code: 'custom',
      message:
        "not supported with strict key order yet (retry.ordering 'strict', the default with retry tiers): set retry.ordering: 'relaxed'",
      path: ['exactlyOnce'],
    });
};
