import { HEADERS } from '../../src/headers.js';
import type { FetchedRecord, OutgoingRecord, ParkingPort } from '../../src/ports.js';
import { PartitionTracker } from '../../src/worker/partition-tracker.js';
import { WorkItem } from '../../src/worker/work-item.js';

/**
 * Parking-topic records as workers write them (docs/architecture.md, "Strict key order"), made
 * without a worker, to set up parking partitions far larger than a test could park through one.
 * Keys are `<group>\0k:<key>` (a parked key's state) and `<group>\0f:<job-topic offset>` (a parked job).
 */
export interface ParkingRecord {
  key: string;
  value: Buffer | null;
  partition: number;
  headers?: Record<string, string>;
}

const pad = 'x'.repeat(60);

/** `k:<key>`: the key waits behind `head` (its job-topic offset `headOffset`); null releases it. */
export function keyState(
  group: string,
  partition: number,
  key: string,
  state: { head: string; headOffset: number } | null,
): ParkingRecord {
  const value = state && Buffer.from(JSON.stringify({ ...state, since: Date.now() }));
  return { key: `${group}\u0000k:${key}`, value, partition };
}

/** `f:<src>`: job-topic offset `src` of `key` parked behind `head`; with head null, its tombstone. */
export function parkedJob(
  group: string,
  partition: number,
  src: number,
  job: { key: string; head: string } | null,
): ParkingRecord {
  const record: ParkingRecord = { key: `${group}\u0000f:${src}`, value: null, partition };
  if (!job) return record;
  return {
    ...record,
    value: Buffer.from(`payload-${src}-${pad}`),
    headers: {
      [HEADERS.parkedKey]: job.key,
      [HEADERS.parkedBehind]: job.head,
      [HEADERS.parkingWriter]: 'seed',
    },
  };
}

/**
 * A busy parking partition as a long downstream outage leaves it: keys `bulk-0…` parked (head
 * `h-<i>` at job-topic offset i), each with `followers` parked jobs written round-robin, so one
 * key's jobs are spread over the whole partition. Follower j of key i is job-topic offset
 * `keys + j * keys + i`. `keys * (followers + 1)` records.
 */
export function* parkedBacklog(group: string, partition: number, keys: number, followers: number) {
  for (let i = 0; i < keys; i++)
    yield keyState(group, partition, `bulk-${i}`, { head: `h-${i}`, headOffset: i });
  for (let j = 0; j < followers; j++)
    for (let i = 0; i < keys; i++)
      yield parkedJob(group, partition, keys + j * keys + i, { key: `bulk-${i}`, head: `h-${i}` });
}

/**
 * What follows such a backlog last: key `late` parked behind `h-late` (job-topic offset `late`)
 * with jobs `late + 1` and `late + 2`, then key `bulk-0` released (its jobs ran: tombstones).
 */
export function* newestParkingChanges(
  group: string,
  partition: number,
  backlog: { keys: number; followers: number },
  late: number,
) {
  yield keyState(group, partition, 'late', { head: 'h-late', headOffset: late });
  for (const src of [late + 1, late + 2])
    yield parkedJob(group, partition, src, { key: 'late', head: 'h-late' });
  for (let j = 0; j < backlog.followers; j++)
    yield parkedJob(group, partition, backlog.keys + j * backlog.keys, null);
  yield keyState(group, partition, 'bulk-0', null);
}

/**
 * Job-topic jobs of partition 0 of `jobs` for a `ParkingState` under test: `job(key, offset)`, job id
 * `<key>-<offset>`, numbered in the order made, of one ownership (tracker).
 */
export function jobMaker(): (key: string, offset: number) => WorkItem {
  const tracker = new PartitionTracker('jobs', 0);
  let seq = 0;
  return (key, offset) =>
    new WorkItem(
      'jobs',
      0,
      {
        offset: String(offset),
        key: Buffer.from(key),
        value: Buffer.from(`v${offset}`),
        headers: { [HEADERS.jobId]: `${key}-${offset}` },
      },
      0,
      tracker,
      seq++,
      0,
    );
}

/**
 * One log per partition, as the parking topic (no compaction: tombstones stay), read in pages of
 * `pageSize`; `failScanAt` makes a scan fail once each time it reaches that offset.
 */
export class MemoryParking implements ParkingPort {
  readonly logs = new Map<number, FetchedRecord[]>();
  pageSize = 3;
  failScanAt: number | undefined;
  scans: number[] = [];
  private log(p: number): FetchedRecord[] {
    const l = this.logs.get(p) ?? [];
    this.logs.set(p, l);
    return l;
  }
  async scan(p: number, from: number, onPage: (records: readonly FetchedRecord[], next: number) => void) {
    this.scans.push(from);
    const end = this.log(p).length;
    for (let at = from; at < end; at += this.pageSize) {
      await Promise.resolve();
      if (this.failScanAt !== undefined && at >= this.failScanAt) {
        this.failScanAt = undefined;
        throw new Error('NOT_LEADER_OR_FOLLOWER');
      }
      const next = Math.min(end, at + this.pageSize);
      onPage(this.log(p).slice(at, next), next);
    }
    return Math.max(from, end);
  }
  async read(p: number, offsets: readonly number[]) {
    return this.log(p).filter((r) => offsets.includes(Number(r.offset)));
  }
  async endOffset(p: number) {
    return this.log(p).length;
  }
  async write(p: number, records: readonly OutgoingRecord[]) {
    const l = this.log(p);
    return records.map((r) => {
      const key = r.key === null ? null : Buffer.from(r.key);
      l.push({ offset: String(l.length), key, value: r.value, headers: r.headers });
      return l.length - 1;
    });
  }
}
