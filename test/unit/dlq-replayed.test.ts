import { describe, expect, it } from 'vitest';
import {
  addReplayed,
  decodeReplayed,
  encodeReplayed,
  pruneReplayed,
  type ReplayedSet,
  replayGroupName,
  replayGroupPrefix,
  unreplayedCount,
} from '../../src/lag/replayed.js';

describe('replayed sets in replay-group commit metadata', () => {
  it('round-trips runs, merging adjacent offsets', () => {
    const set = addReplayed({ runs: [] }, [10, 12, 11, 20, 2 ** 40, 2 ** 40 + 1]);
    expect(set.runs).toEqual([
      [10, 13],
      [20, 21],
      [2 ** 40, 2 ** 40 + 2],
    ]);
    const text = encodeReplayed(set);
    expect(text).toMatch(/^r1:/);
    expect(decodeReplayed(text)).toEqual(set);
    expect(decodeReplayed(encodeReplayed({ runs: [] }))).toEqual({ runs: [] });
  });

  it('ignores metadata that is not a replayed set', () => {
    expect(decodeReplayed(null)).toBeUndefined();
    expect(decodeReplayed('')).toBeUndefined();
    expect(decodeReplayed('s1:AAAA')).toBeUndefined();
  });

  it('counts the records no group replayed, overlaps once, within the retained range', () => {
    const a: ReplayedSet = { runs: [[0, 5]] };
    const b: ReplayedSet = { runs: [[3, 8]] };
    expect(unreplayedCount(0, 10, [])).toBe(10);
    expect(unreplayedCount(0, 10, [a])).toBe(5);
    expect(unreplayedCount(0, 10, [a, b])).toBe(2);
    expect(unreplayedCount(4, 10, [a, b])).toBe(2);
    expect(unreplayedCount(9, 10, [a, b])).toBe(1);
    expect(unreplayedCount(10, 10, [a, b])).toBe(0);
  });

  it('prunes offsets the DLQ no longer retains', () => {
    expect(
      pruneReplayed(
        {
          runs: [
            [0, 5],
            [7, 9],
          ],
        },
        4,
      ),
    ).toEqual({
      runs: [
        [4, 5],
        [7, 9],
      ],
    });
    expect(pruneReplayed({ runs: [[0, 5]] }, 6)).toEqual({ runs: [] });
  });

  it('stays under 4000 characters by folding the oldest runs into a count', () => {
    // Every third offset of 30,000: 10,000 separate runs, far more than fit.
    const offsets = Array.from({ length: 10_000 }, (_, i) => i * 3);
    const set = addReplayed({ runs: [] }, offsets);
    const text = encodeReplayed(set);
    expect(text.length).toBeLessThanOrEqual(4000);
    const back = decodeReplayed(text)!;
    expect(back.folded).toBeDefined();
    const exactRuns = back.runs.reduce((s, [f, t]) => s + (t - f), 0);
    expect(back.folded!.count + exactRuns).toBe(10_000);
    // The newest runs are kept exactly; the count is spread over the folded range.
    expect(back.runs[back.runs.length - 1]).toEqual([29_997, 29_998]);
    expect(unreplayedCount(0, 30_000, [back])).toBe(20_000);
    const approx = unreplayedCount(15_000, 30_000, [back]);
    expect(Math.abs(approx - 10_000)).toBeLessThanOrEqual(2);
  });

  it('names one replay group per filter under the job topic prefix', () => {
    const all = replayGroupName('payments', {});
    const byKey = replayGroupName('payments', { key: 'a' });
    expect(all).not.toBe(byKey);
    expect(all.startsWith(replayGroupPrefix('payments'))).toBe(true);
    expect(replayGroupName('payments', { key: 'a' })).toBe(byKey);
  });
});
