import { describe, expect, it } from 'vitest';
import { PartitionTracker } from '../../../src/worker/partition-tracker.js';

describe('PartitionTracker', () => {
  it('has no commit point before anything is accepted', () => {
    expect(new PartitionTracker('t', 0).commitPoint()).toBeUndefined();
  });

  it('commits up to the first unfinished offset, never past it', () => {
    const t = new PartitionTracker('t', 0);
    for (const o of [10, 11, 12, 13]) t.accept(o);
    expect(t.commitPoint()).toBe(10);
    t.complete(11);
    t.complete(12);
    expect(t.commitPoint()).toBe(10);
    t.complete(10);
    expect(t.commitPoint()).toBe(13);
    t.complete(13);
    expect(t.commitPoint()).toBe(14);
    expect(t.pendingCount()).toBe(0);
  });

  it('handles gaps in offsets (compaction, transaction markers)', () => {
    const t = new PartitionTracker('t', 0);
    for (const o of [5, 9, 20]) t.accept(o);
    t.complete(5);
    expect(t.commitPoint()).toBe(9);
    t.complete(20);
    expect(t.commitPoint()).toBe(9);
    t.complete(9);
    expect(t.commitPoint()).toBe(21);
  });

  it('recognises re-fetched offsets and refuses to accept one twice', () => {
    const t = new PartitionTracker('t', 0);
    t.accept(1);
    t.accept(2);
    expect(t.seen(2)).toBe(true);
    expect(t.seen(3)).toBe(false);
    expect(() => t.accept(2)).toThrow(/accepted twice/);
    expect(t.complete(7)).toBe(false);
    expect(t.complete(1)).toBe(true);
    expect(t.complete(1)).toBe(false);
  });

  it('stays correct over many offsets completed out of order (random)', () => {
    const t = new PartitionTracker('t', 3);
    const n = 20_000;
    for (let i = 0; i < n; i++) t.accept(i * 2);
    const order = Array.from({ length: n }, (_, i) => i * 2).sort(() => Math.random() - 0.5);
    const done = new Set<number>();
    for (const o of order) {
      t.complete(o);
      done.add(o);
      const cp = t.commitPoint()!;
      // Every accepted offset below the commit point is done; the commit point itself is not (unless past the end).
      if (cp < n * 2) expect(done.has(cp)).toBe(false);
      if (cp - 2 >= 0 && cp <= n * 2 - 2) expect(done.has(cp - 2)).toBe(true);
    }
    expect(t.commitPoint()).toBe((n - 1) * 2 + 1);
  });

  it("keeps the previous owner's done offsets in its map until it fetched them (sim seed 792)", () => {
    const t = new PartitionTracker('t', 0);
    // The previous owner committed 14 with 17 and 19 done above it.
    t.preloadedDone = new Set([17, 19]);
    t.accept(14);
    t.accept(15);
    t.complete(15);
    // A commit now (before 17 is fetched) must still say 17 and 19 are done.
    expect(t.commitPoint()).toBe(14);
    expect(t.doneAbove()).toEqual([15, 17, 19]);
    // 16 fetched: 17, done before, is taken as accepted and done with it (fetched again: seen).
    t.accept(16);
    expect(t.seen(17)).toBe(true);
    expect(t.doneAbove()).toEqual([15, 17, 19]);
  });

  it("moves its commit point past the previous owner's done offsets right after its last (sim seed 60302)", () => {
    const t = new PartitionTracker('t', 0);
    // The previous owner committed 11 with 13 and 14 done; 12 was fetched and finished here.
    t.preloadedDone = new Set([13, 14]);
    t.accept(11);
    t.complete(11);
    // 12 a transaction marker: the fetch went past it.
    t.skipTo(13);
    // 13 cannot be in a map whose point is 13: taken as done, the point moves past it (and 14).
    expect(t.commitPoint()).toBe(15);
    expect(t.doneAbove()).toEqual([]);
    expect(t.seen(14)).toBe(true);
  });

  it("takes a long run of the previous owner's done offsets in one step (no recursion per offset)", () => {
    const t = new PartitionTracker('t', 0);
    t.preloadedDone = new Set(Array.from({ length: 100_000 }, (_, i) => i + 1));
    t.preloadedDone.add(100_005);
    t.accept(0);
    expect(t.commitPoint()).toBe(0); // 0 is not done
    t.complete(0);
    expect(t.commitPoint()).toBe(100_001);
    expect(t.doneAbove()).toEqual([100_005]);
    t.accept(100_001);
    expect(t.commitPoint()).toBe(100_001);
  });
});
