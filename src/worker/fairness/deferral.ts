import type { Logger } from '../../observability/logger.js';
import type { FetchedRecord, RecordReadPort } from '../../ports.js';
import type { Clock } from '../../timing/clock.js';
import type { JobBuffer } from '../job-buffer.js';
import type { OrderingMode } from '../key-scheduler.js';
import type { PartitionTracker } from '../partition-tracker.js';
import type { WorkItem } from '../work-item.js';
import { Deferred } from './deferred.js';
import type { Fairness } from './fairness.js';

/** Most offsets one read-back asks for. */
const READ_BACK_MAX = 500;
/** After a failed read-back, the next try. */
const READ_BACK_RETRY_MS = 1000;

/**
 * The intake's side of fairness: a job-topic record of a tenant that holds its share of the job
 * buffer or more is _deferred_ — accepted in its partition's tracker but not done (so the commit
 * point stays at the first deferred offset, and the offset map records what finished above it),
 * not buffered, not run — and the intake reads on to other tenants' records. A deferred record is
 * read again by its exact offset (`RecordReadPort`, no consumer seek) once its tenant is below its
 * share, and then taken like a fetched one. A tenant's share of the buffer is
 * `maxBufferedJobs × weight / (sum of the weights of the tenants in the buffer + 1)` (the 1 keeps
 * room for a tenant not seen yet).
 *
 * Order: in `key` mode a record whose key has a deferred record is deferred too, and read-backs
 * take a key's records in offset order; `partition` mode defers nothing (a deferral would hold the
 * whole partition). Bounds: at most `maxDeferred` deferred records per partition (a map entry and
 * three offsets each, in deferred.ts's indexes, which drop removed offsets once they outnumber the
 * live ones; past it the intake waits as for a full buffer) and never past the offset map's
 * reach (the intake's existing rule); each deferred record is fetched once more (a read-back picks
 * it by offset, in batches: a tenant's close deferred records come back in one fetch sized to them).
 * A partition revoked drops its deferred records: the next owner reads them from the commit point.
 */
export class Deferral {
  private readonly parts = new Set<Deferred>();
  private readonly byTracker = new WeakMap<PartitionTracker, Deferred>();
  /** Offsets being read back, per tenant and in all (they count against the tenant's room). */
  private readonly inflight = { of: new Map<string, number>(), total: 0 };
  /** Where the next `readBack` starts (partitions take turns). */
  private turn = 0;

  constructor(
    private readonly deps: {
      fairness: Fairness;
      buffer: JobBuffer;
      maxBufferedJobs: number;
      maxDeferred: number;
      ordering: OrderingMode;
      reader: RecordReadPort;
      clock: Clock;
      logger: Logger;
      /** Still this ownership's partition. */
      current: (tracker: PartitionTracker) => boolean;
      /** The intake is past more offsets of the tracker's partition (strict key order resumes releases). */
      passed: (tracker: PartitionTracker) => void;
      /** Takes a record read back as an accepted job (already accepted in the tracker). */
      take: (tracker: PartitionTracker, record: FetchedRecord) => Promise<void>;
    },
  ) {
    deps.buffer.onRelease = () => this.readBack();
  }

  /** Deferred records on the partitions this worker owns. */
  get count(): number {
    let n = 0;
    for (const d of this.parts) if (this.deps.current(d.tracker)) n += d.size;
    return n;
  }

  /** How many of the job buffer's places tenant `t` may hold while others could use them. */
  share(tenant: string): number {
    const { fairness, buffer, maxBufferedJobs } = this.deps;
    let weights = 1;
    for (const t of buffer.byTenant.keys()) weights += fairness.weightOf(t);
    if (!buffer.byTenant.has(tenant)) weights += fairness.weightOf(tenant);
    return Math.max(1, Math.floor((maxBufferedJobs * fairness.weightOf(tenant)) / weights));
  }

  private over(tenant: string, extra = 0): boolean {
    return (this.deps.buffer.byTenant.get(tenant) ?? 0) + extra >= this.share(tenant);
  }

  /**
   * What the intake does with a job-topic record: `defer` it, `take` it, or `wait` (its key has
   * deferred records and no more may be deferred now).
   */
  decide(item: WorkItem, mayDefer: boolean): 'defer' | 'take' | 'wait' {
    const { maxDeferred, ordering } = this.deps;
    if (maxDeferred === 0 || ordering === 'partition') return 'take';
    const d = this.byTracker.get(item.tracker);
    const keyWaits = ordering === 'key' && item.key !== null && d?.keys.has(item.key) === true;
    const room = mayDefer && (d?.size ?? 0) < maxDeferred;
    if (keyWaits) return room ? 'defer' : 'wait';
    return room && this.over(item.tenant ?? '') ? 'defer' : 'take';
  }

  defer(item: WorkItem): void {
    let d = this.byTracker.get(item.tracker);
    if (!d) {
      d = new Deferred(item.tracker);
      this.byTracker.set(item.tracker, d);
    }
    this.parts.add(d);
    d.add(Number(item.offset), item.tenant ?? '', ordering(this.deps.ordering, item.key));
  }

  /** Reads deferred records back where their tenants are below their share (one read per partition at a time). */
  readBack(): void {
    const parts = [...this.parts];
    this.turn = (this.turn + 1) % Math.max(1, parts.length);
    for (let i = 0; i < parts.length; i++) {
      const d = parts[(this.turn + i) % parts.length]!;
      if (!this.deps.current(d.tracker) || d.size === 0) {
        if (!d.reading) this.parts.delete(d);
        continue;
      }
      if (d.reading) continue;
      const picks = this.pick(d);
      if (picks.length > 0) this.read(d, picks);
    }
  }

  /** Counts `n` more (or fewer) of the tenant's records as being read back. */
  private reading(tenant: string, n: number): void {
    const now = (this.inflight.of.get(tenant) ?? 0) + n;
    if (now > 0) this.inflight.of.set(tenant, now);
    else this.inflight.of.delete(tenant);
    this.inflight.total += n;
  }

  /**
   * The oldest deferred offsets whose tenants have room, a key's in order (a key passed over stops
   * there). It runs on every job that leaves the buffer: with no deferred tenant under its share
   * it returns at once, and it visits only the deferred records of the tenants with room, so a
   * small tenant's records behind a bulk tenant's thousands are found without walking those (a
   * walk of every deferred record per released job made the bulk tenant's backlog crawl).
   *
   * In batches: a tenant is read back once it has room for half its share (or for all it has
   * deferred here), not on every job of it that leaves — a read-back per released job fetched
   * 64 KiB for a dozen records (noisy-tenant: 17,000 read-backs for 200,000 records). Its records
   * being read count against its room, so the partitions' read-backs together stay within it.
   */
  private pick(d: Deferred): number[] {
    const { buffer, maxBufferedJobs } = this.deps;
    const room = maxBufferedJobs - buffer.jobs - this.inflight.total;
    if (room <= 0) return [];
    const left = new Map<string, number>();
    for (const [tenant, q] of d.tenants) {
      const share = this.share(tenant);
      const n = share - (buffer.byTenant.get(tenant) ?? 0) - (this.inflight.of.get(tenant) ?? 0);
      if (n > 0 && n >= Math.min(q.size, Math.ceil(share / 2))) left.set(tenant, n);
    }
    return left.size === 0 ? [] : d.oldest(left, Math.min(READ_BACK_MAX, room));
  }

  private read(d: Deferred, picks: number[]): void {
    const { reader, clock, logger, current, take } = this.deps;
    d.reading = true;
    // Each pick leaves the count once: when taken, or at the end (compacted away, partition gone).
    const left = new Map(picks.map((offset) => [offset, d.records.get(offset)!.tenant]));
    for (const tenant of left.values()) this.reading(tenant, 1);
    const settle = (offset: number) => {
      const tenant = left.get(offset);
      if (tenant !== undefined && left.delete(offset)) this.reading(tenant, -1);
    };
    reader.read(d.tracker.partition, picks).then(
      async (records) => {
        const got = new Set(records.map((r) => Number(r.offset)));
        for (const record of records) {
          if (!current(d.tracker)) break;
          // Deferred until it is in its key's lane: a later record of the key fetched meanwhile
          // (while this one waits for its schema or for room) is deferred behind it.
          await take(d.tracker, record);
          settle(Number(record.offset));
          d.remove(Number(record.offset));
          this.deps.passed(d.tracker);
        }
        // Compacted away since it was fetched: nothing to run, done.
        for (const offset of picks) {
          settle(offset);
          if (!got.has(offset) && current(d.tracker) && d.records.has(offset)) {
            d.remove(offset);
            d.tracker.complete(offset);
          }
        }
        d.reading = false;
        this.readBack();
      },
      (error: unknown) => {
        for (const offset of picks) settle(offset);
        logger.warn(
          { err: error, partition: d.tracker.partition },
          'reading deferred records back failed; trying again',
        );
        clock.setTimeout(
          () => {
            d.reading = false;
            this.readBack();
          },
          READ_BACK_RETRY_MS,
          { unref: true },
        );
      },
    );
  }
}

/** The key a deferred record holds back (only `key` mode keeps keys in order). */
const ordering = (mode: OrderingMode, key: string | null) => (mode === 'key' ? key : null);
