import { describe, expect, it } from 'vitest';
import { HEADERS } from '../../../src/headers.js';
import { createLogger } from '../../../src/observability/logger.js';
import type { FetchedRecord, OutgoingRecord, ParkingPort } from '../../../src/ports.js';
import { systemClock } from '../../../src/timing/clock.js';
import { ParkingState } from '../../../src/worker/parking.js';
import { jobMaker, MemoryParking } from '../../support/parking-records.js';

/**
 * One worker's port to a parking topic shared with others (`logs`, `epochs`), fenced as the kafkajs
 * port is: `fence` takes the partition's epoch; a write of an older epoch is refused and the port
 * no longer holds the partition. `steps` records fences and scans in order.
 */
class FencedParking extends MemoryParking {
  private readonly mine = new Map<number, number>();
  constructor(
    shared: MemoryParking,
    private readonly epochs: Map<number, number>,
    readonly steps: string[] = [],
  ) {
    super();
    (this as { logs: Map<number, FetchedRecord[]> }).logs = shared.logs;
  }
  async fence(p: number) {
    const epoch = (this.epochs.get(p) ?? 0) + 1;
    this.epochs.set(p, epoch);
    this.mine.set(p, epoch);
    this.steps.push(`fence ${p}`);
  }
  holds(p: number) {
    return this.mine.has(p);
  }
  async release(p: number) {
    this.mine.delete(p);
  }
  override async scan(p: number, from: number, onPage: Parameters<MemoryParking['scan']>[2]) {
    this.steps.push(`scan ${p}`);
    return super.scan(p, from, onPage);
  }
  override async write(p: number, records: readonly OutgoingRecord[]) {
    const epoch = this.mine.get(p);
    if (epoch === undefined || this.epochs.get(p) !== epoch) {
      this.mine.delete(p);
      throw Object.assign(new Error('producer fenced'), { type: 'PRODUCER_FENCED' });
    }
    return super.write(p, records);
  }
}

const state = (port: ParkingPort, group = 'g', lost?: (partition: number) => void) =>
  new ParkingState({
    port,
    group,
    clock: systemClock,
    logger: createLogger({ level: 'silent' }),
    running: () => true,
    random: Math.random,
    ...(lost ? { lost } : {}),
  });

const job = jobMaker();

describe('ParkingState', () => {
  it('parks a key, follows it in order, and a new owner reads the same state back', async () => {
    const port = new MemoryParking();
    const a = state(port);
    a.take(0);
    await a.ready(0);
    await a.park(job('hot', 3));
    const parked = a.get(0, 'hot')!;
    for (const o of [4, 7, 9]) await a.follow(job('hot', o), parked);
    expect(parked.followers.map((f) => f.src)).toEqual([4, 7, 9]);
    expect(parked.last).toBe(9);

    const b = state(port);
    b.take(0);
    await b.ready(0);
    const taken = b.get(0, 'hot')!;
    expect({ head: taken.head, headOffset: taken.headOffset, last: taken.last }).toEqual({
      head: 'hot-3',
      headOffset: 3,
      last: 3,
    });
    // Read again, the parked offsets are done; one whose hand-off never landed (5, 8) is not.
    expect([4, 5, 7, 8, 9].map((o) => b.handedOff(0, o))).toEqual([true, false, true, false, true]);
    expect(b.loadedTop(0)).toBe(9);
    // Read back as the job-topic records they were: offset, key, value, headers without parking ones.
    const records = await b.read(0, taken.followers);
    expect(records.map((r) => [r.offset, r.key?.toString(), r.value?.toString()])).toEqual([
      ['4', 'hot', 'v4'],
      ['7', 'hot', 'v7'],
      ['9', 'hot', 'v9'],
    ]);
    expect(records[0]!.headers?.[HEADERS.parkedKey]).toBeUndefined();
    expect(records[0]!.headers?.[HEADERS.jobId]).toBe('hot-4');
  });

  it('a parked job that fails into a tier becomes the head; the jobs behind it stay parked', async () => {
    const port = new MemoryParking();
    const a = state(port);
    a.take(0);
    await a.ready(0);
    await a.park(job('k', 1));
    const parked = a.get(0, 'k')!;
    for (const o of [2, 3, 4]) await a.follow(job('k', o), parked);
    // Released: 2 ran, 3 failed into a tier.
    await a.ran(0, parked, 2)();
    const three = job('k', 3);
    three.released = true;
    await a.park(three);
    const now = a.get(0, 'k')!;
    expect(now.head).toBe('k-3');
    expect(now.followers.map((f) => f.src)).toEqual([4]);
    const b = state(port);
    b.take(0);
    await b.ready(0);
    expect(b.get(0, 'k')!.head).toBe('k-3');
    expect(b.get(0, 'k')!.followers.map((f) => f.src)).toEqual([4]);
    // The next owner runs the rest: the key is free, for it and for the owner after it.
    const taken = b.get(0, 'k')!;
    await b.ran(0, taken, 4)();
    await b.unpark(0, 'k');
    expect(b.get(0, 'k')).toBeUndefined();
    const c = state(port);
    c.take(0);
    await c.ready(0);
    expect(c.get(0, 'k')).toBeUndefined();
    expect(c.counts()).toEqual({ keys: 0, jobs: 0 });
  });

  it('groups of one job topic park their keys apart', async () => {
    const port = new MemoryParking();
    const a = state(port, 'group-a');
    a.take(0);
    await a.ready(0);
    await a.park(job('shared', 5));
    await a.follow(job('shared', 6), a.get(0, 'shared')!);
    const b = state(port, 'group-b');
    b.take(0);
    await b.ready(0);
    expect(b.get(0, 'shared')).toBeUndefined();
    expect(b.counts()).toEqual({ keys: 0, jobs: 0 });
    const again = state(port, 'group-a');
    again.take(0);
    await again.ready(0);
    expect(again.counts()).toEqual({ keys: 1, jobs: 1 });
  });

  it('a read that fails midway resumes after the last page folded, and the partition counts as stalled meanwhile', async () => {
    const port = new MemoryParking();
    const a = state(port);
    a.take(0);
    await a.ready(0);
    for (let k = 0; k < 5; k++) {
      await a.park(job(`k${k}`, 10 * k));
      for (const o of [1, 2, 3]) await a.follow(job(`k${k}`, 10 * k + o), a.get(0, `k${k}`)!);
    }
    await a.unpark(0, 'k1');
    port.failScanAt = 9;
    port.scans = [];
    const b = state(port);
    b.take(0);
    await waitFor(() => b.stalled().length > 0);
    expect(b.stalled()).toEqual([0]);
    await b.ready(0);
    expect(b.stalled()).toEqual([]);
    // Read from the start once, then again from the page where it failed: nothing read twice.
    expect(port.scans).toEqual([0, 9]);
    expect(b.get(0, 'k1')).toBeUndefined();
    expect(b.get(0, 'k4')?.followers.map((f) => f.src)).toEqual([41, 42, 43]);
    expect(b.counts()).toEqual({ keys: 4, jobs: 12 }); // k1's jobs are orphans (its key was unparked)
  });

  it('a parking partition that never answers leaves the partition stalled until it is dropped', async () => {
    const port = new MemoryParking();
    port.scan = async () => {
      throw new Error('NOT_LEADER_OR_FOLLOWER');
    };
    const a = state(port);
    a.take(3);
    await waitFor(() => a.stalled().length > 0);
    expect(a.stalled()).toEqual([3]);
    a.drop(3);
    expect(a.stalled()).toEqual([]);
  });
});

describe('ParkingState, fenced writes', () => {
  it('takes the fence before it reads; a later write of an earlier owner is refused, never lands, and it gives the partition up', async () => {
    const shared = new MemoryParking();
    const epochs = new Map<number, number>();
    const lost: number[] = [];
    const oldPort = new FencedParking(shared, epochs);
    const old = state(oldPort, 'g', (p) => lost.push(p));
    old.take(0);
    await old.ready(0);
    await old.park(job('hot', 3));
    const parked = old.get(0, 'hot')!;
    await old.follow(job('hot', 4), parked);

    // A new owner (the old one was expelled and has not noticed): fence first, then the read.
    const newPort = new FencedParking(shared, epochs);
    const owner = state(newPort);
    owner.take(0);
    await owner.ready(0);
    expect(newPort.steps).toEqual(['fence 0', 'scan 0']);
    expect(owner.get(0, 'hot')?.head).toBe('hot-3');
    const end = shared.logs.get(0)!.length;

    // The zombie's next writes (a new head, a follower) are refused: nothing lands after the read.
    await expect(old.park(job('hot', 5))).rejects.toThrow('producer fenced');
    await expect(old.follow(job('hot', 6), parked)).rejects.toThrow('producer fenced');
    expect(shared.logs.get(0)!.length).toBe(end);
    expect(lost).toEqual([0]);
    // Kept across a rebalance, it is not this ownership's any more: taken afresh.
    expect(await old.unchanged(0)).toBe(false);

    // The new owner's writes land.
    await owner.follow(job('hot', 7), owner.get(0, 'hot')!);
    expect(shared.logs.get(0)!.length).toBe(end + 1);
  });

  it('a partition kept across a rebalance is fenced again: a member that took it meanwhile writes no more', async () => {
    const shared = new MemoryParking();
    const epochs = new Map<number, number>();
    const keptPort = new FencedParking(shared, epochs);
    const kept = state(keptPort);
    kept.take(0);
    await kept.ready(0);
    await kept.park(job('hot', 3));
    // A member that owned it for a generation the keeper missed: took it, wrote nothing yet.
    const otherPort = new FencedParking(shared, epochs);
    const other = state(otherPort);
    other.take(0);
    await other.ready(0);
    expect(await kept.unchanged(0)).toBe(true);
    expect(keptPort.steps).toEqual(['fence 0', 'scan 0', 'fence 0']);
    await expect(other.park(job('cold', 8))).rejects.toThrow('producer fenced');
    await kept.park(job('cold', 9));
  });

  it('a partition kept by a member that stayed in the group is not fenced again (nobody else held it)', async () => {
    const shared = new MemoryParking();
    const keptPort = new FencedParking(shared, new Map());
    const kept = state(keptPort);
    kept.take(0);
    await kept.ready(0);
    await kept.park(job('hot', 3));
    expect(await kept.unchanged(0, true)).toBe(true);
    expect(keptPort.steps).toEqual(['fence 0', 'scan 0']);
    await kept.park(job('cold', 9));
  });
});

async function waitFor(check: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 5));
  if (!check()) throw new Error('condition not reached within 1 s');
}
