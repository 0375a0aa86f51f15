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
});
