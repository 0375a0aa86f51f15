import { describe, expect, it } from 'vitest';
import { decodeOffsetMap, encodeOffsetMap, offsetMapCapacity } from '../../../src/worker/offset-map.js';
import { PartitionTracker } from '../../../src/worker/partition-tracker.js';

describe('offset map in commit metadata', () => {
  it('round-trips the done offsets above the commit point', () => {
    const t = new PartitionTracker('t', 0);
    for (let o = 100; o < 400; o++) t.accept(o);
    const done = [101, 102, 150, 399];
    for (const o of done) t.complete(o);
    expect(t.commitPoint()).toBe(100);
    const metadata = encodeOffsetMap(100, t.doneAbove());
    expect(metadata!.startsWith('s1:')).toBe(true);
    expect(metadata!.length).toBeLessThan(100);
    expect([...decodeOffsetMap(100, metadata)]).toEqual(done);
  });

  it('is empty when nothing is done above the point, and ignores foreign metadata', () => {
    expect(encodeOffsetMap(5, [])).toBe('');
    expect(decodeOffsetMap(5, '')).toEqual(new Set());
    expect(decodeOffsetMap(5, "someone else's metadata")).toEqual(new Set());
    expect(decodeOffsetMap(5, null)).toEqual(new Set());
  });

  it('refuses a map that would not fit instead of cutting it, and fills its capacity exactly', () => {
    expect(encodeOffsetMap(0, [1, 50_000, 1_000_000])).toBeUndefined();
    const capacity = offsetMapCapacity(4000);
    const full = encodeOffsetMap(0, [1, capacity]);
    expect(full).toBeDefined();
    expect(full!.length).toBeLessThanOrEqual(4000);
    expect([...decodeOffsetMap(0, full)]).toEqual([1, capacity]);
    expect(encodeOffsetMap(0, [1, capacity + 1])).toBeUndefined();
    for (const max of [10, 40, 41, 42, 43, 200]) {
      const c = offsetMapCapacity(max);
      expect(encodeOffsetMap(0, [c], max)!.length).toBeLessThanOrEqual(max);
    }
  });
});
