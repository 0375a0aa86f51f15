import { describe, expect, it } from 'vitest';
import { createLogger } from '../../../../src/observability/logger.js';
import type { FetchedRecord } from '../../../../src/ports.js';
import { systemClock } from '../../../../src/timing/clock.js';
import { Deferral } from '../../../../src/worker/fairness/deferral.js';
import type { Fairness } from '../../../../src/worker/fairness/fairness.js';
import { JobBuffer } from '../../../../src/worker/job-buffer.js';
import { PartitionTracker } from '../../../../src/worker/partition-tracker.js';
import type { WorkItem } from '../../../../src/worker/work-item.js';

function setup(opts: { maxDeferred?: number; weightOf?: (t: string) => number } = {}) {
  const buffer = new JobBuffer(10, 1 << 20, systemClock);
  const tracker = new PartitionTracker('jobs', 0);
  const reads: number[][] = [];
  const taken: string[] = [];
  const deferral = new Deferral({
    fairness: { weightOf: opts.weightOf ?? ((t: string) => (t === 'gold' ? 3 : 1)) } as unknown as Fairness,
    buffer,
    maxBufferedJobs: 10,
    maxDeferred: opts.maxDeferred ?? 100,
    ordering: 'key',
    reader: {
      read: async (_p, offsets) => {
        reads.push([...offsets]);
        return offsets.map((o): FetchedRecord => ({ offset: String(o), key: null, value: null }));
      },
    },
    clock: systemClock,
    logger: createLogger({ level: 'silent' }),
    current: () => true,
    passed: () => undefined,
    take: async (_t, record) => {
      taken.push(record.offset);
      buffer.add(item('bulk', 'x', Number(record.offset)));
    },
  });
  const item = (tenant: string, key: string | null, offset: number) =>
    ({ tenant, key, offset: String(offset), tracker, size: 10 }) as unknown as WorkItem;
  return { buffer, tracker, deferral, item, reads, taken };
}

describe('Deferral (intake side of fairness)', () => {
  it("a tenant's share of the buffer is weighted, with room kept for a tenant not seen yet", () => {
    const { buffer, deferral, item } = setup();
    expect(deferral.share('bulk')).toBe(5); // 10 × 1 / (1 + 1)
    for (let i = 0; i < 5; i++) buffer.add(item('bulk', `k${i}`, i));
    expect(deferral.share('small')).toBe(3); // 10 × 1 / (bulk 1 + small 1 + 1)
    expect(deferral.share('gold')).toBe(6); // 10 × 3 / (1 + 3 + 1)
    expect(deferral.decide(item('bulk', 'k9', 5), true)).toBe('defer');
    expect(deferral.decide(item('small', 's', 6), true)).toBe('take');
    // Not past the offset map's reach: taken (the intake then waits for room as before).
    expect(deferral.decide(item('bulk', 'k9', 5), false)).toBe('take');
  });

  it('a key with a deferred record defers its later records, whatever their tenant; past maxDeferred they wait', () => {
    const { buffer, deferral, item, tracker } = setup({ maxDeferred: 1 });
    for (let i = 0; i < 5; i++) buffer.add(item('bulk', `k${i}`, i));
    const first = item('bulk', 'shared', 5);
    expect(deferral.decide(first, true)).toBe('defer');
    tracker.accept(5);
    deferral.defer(first);
    expect(deferral.count).toBe(1);
    expect(deferral.decide(item('small', 'shared', 6), true)).toBe('wait');
    expect(deferral.decide(item('small', 'other', 6), true)).toBe('take');
    // The commit point stays at the deferred offset.
    tracker.accept(6);
    tracker.complete(6);
    expect(tracker.commitPoint()).toBe(5);
    expect(tracker.doneAbove()).toEqual([6]);
    // Strict key order asks whether the intake passed an offset: not a deferred one.
    expect(tracker.passed(5)).toBe(false);
    expect(tracker.passed(6)).toBe(false);
  });

  it('reads deferred records back in offset order once their tenant is under its share', async () => {
    const { buffer, deferral, item, tracker, reads, taken } = setup();
    const held = Array.from({ length: 5 }, (_, i) => item('bulk', `k${i}`, i));
    for (const h of held) {
      tracker.accept(Number(h.offset));
      buffer.add(h);
    }
    for (const o of [5, 6, 7, 8]) {
      const d = item('bulk', `k${o}`, o);
      tracker.accept(o);
      deferral.defer(d);
    }
    deferral.readBack();
    expect(reads).toEqual([]); // bulk holds its share (5)
    buffer.release(held[0]!);
    buffer.release(held[1]!);
    await new Promise((r) => setTimeout(r, 10));
    // Two places free of a share of 5: not a read-back yet (it waits for room for half its share).
    expect(reads).toEqual([]);
    buffer.release(held[2]!);
    await new Promise((r) => setTimeout(r, 10));
    // Three places: three records read back in one read (by exact offset), oldest first; the
    // fourth stays deferred.
    expect(reads).toEqual([[5, 6, 7]]);
    expect(taken).toEqual(['5', '6', '7']);
    expect(deferral.count).toBe(1);
    expect(tracker.commitPoint()).toBe(0);
  });

  it('a tenant with fewer deferred records than half its share is read back at once', async () => {
    const { buffer, deferral, item, tracker, reads } = setup();
    const held = Array.from({ length: 5 }, (_, i) => item('bulk', `k${i}`, i));
    for (const h of held) {
      tracker.accept(Number(h.offset));
      buffer.add(h);
    }
    tracker.accept(5);
    deferral.defer(item('bulk', 'k5', 5));
    buffer.release(held[0]!);
    await new Promise((r) => setTimeout(r, 10));
    expect(reads).toEqual([[5]]);
  });

  it("the partitions' read-backs together stay within a tenant's room (records being read count)", async () => {
    const { buffer, deferral, reads } = setup();
    const trackers = [0, 1, 2].map((p) => new PartitionTracker('jobs', p));
    let offset = 0;
    for (const tracker of trackers)
      for (let i = 0; i < 6; i++) {
        tracker.accept(offset);
        deferral.defer({
          tenant: 'bulk',
          key: `k${offset}`,
          offset: String(offset++),
          tracker,
          size: 10,
        } as never);
      }
    // Nothing buffered: the bulk tenant's share is 5, read from one partition, not 5 from each.
    deferral.readBack();
    await new Promise((r) => setTimeout(r, 10));
    expect(reads.flat().length).toBeLessThanOrEqual(5);
    expect(buffer.jobs).toBeLessThanOrEqual(5);
  });

  it('a read-back looks at the deferred records only for tenants under their share (not once per record per released job)', async () => {
    let looks = 0;
    const { buffer, deferral, item, tracker, reads } = setup({
      maxDeferred: 10_000,
      weightOf: () => {
        looks++;
        return 1;
      },
    });
    const held = Array.from({ length: 5 }, (_, i) => item('bulk', `k${i}`, i));
    for (const h of held) {
      tracker.accept(Number(h.offset));
      buffer.add(h);
    }
    for (let o = 5; o < 10_005; o++) {
      tracker.accept(o);
      deferral.defer(item('bulk', `k${o % 1000}`, o));
    }
    // The bulk tenant holds its share: 10,000 released jobs' read-backs find nothing to read, and
    // each looks at the one deferred tenant, not at its 10,000 records (that was 10^8 looks).
    looks = 0;
    for (let i = 0; i < 10_000; i++) deferral.readBack();
    expect(reads).toEqual([]);
    expect(looks).toBeLessThan(10_000 * 5);
    // A small tenant's record behind them is still found and read back once there is room.
    tracker.accept(10_005);
    deferral.defer(item('small', 's0', 10_005));
    buffer.release(held[0]!);
    await new Promise((r) => setTimeout(r, 10));
    // The small tenant behind 10,000 records (the bulk tenant, one place below its share, waits
    // for room for a batch).
    expect(reads.flat()).toEqual([10_005]);
  });
});
