import { describe, expect, it } from 'vitest';
import { Deferred } from '../../../../src/worker/fairness/deferred.js';
import { PartitionTracker } from '../../../../src/worker/partition-tracker.js';

/** The read-back's pick as it was: one walk over every deferred record in offset order. */
function walk(
  records: { offset: number; tenant: string; key: string | null }[],
  left: Map<string, number>,
  max: number,
): number[] {
  const blocked = new Set<string>();
  const picks: number[] = [];
  for (const { offset, tenant, key } of records) {
    if (picks.length >= max) break;
    if (key !== null && blocked.has(key)) continue;
    const n = left.get(tenant) ?? 0;
    if (n <= 0) {
      if (key !== null) blocked.add(key);
      continue;
    }
    left.set(tenant, n - 1);
    picks.push(offset);
  }
  return picks;
}

/** A small deterministic generator (mulberry32). */
function random(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('Deferred (indexes of one partition deferral)', () => {
  it("a key's later record waits behind its earlier one of a tenant without room", () => {
    const d = new Deferred(new PartitionTracker('jobs', 0));
    d.add(1, 'bulk', 'shared');
    d.add(2, 'bulk', 'b1');
    d.add(3, 'small', 'shared');
    d.add(4, 'small', 's1');
    expect(d.oldest(new Map([['small', 5]]), 500)).toEqual([4]);
    expect(
      d.oldest(
        new Map([
          ['small', 5],
          ['bulk', 1],
        ]),
        500,
      ),
    ).toEqual([1, 3, 4]);
    d.remove(1);
    expect(d.tracker.deferredFloor).toBe(2);
    expect(d.oldest(new Map([['small', 5]]), 500)).toEqual([3, 4]);
  });

  it('picks what one walk over every deferred record picks, through random adds and removals', () => {
    for (let seed = 1; seed <= 300; seed++) {
      const rnd = random(seed);
      const d = new Deferred(new PartitionTracker('jobs', 0));
      const live: { offset: number; tenant: string; key: string | null }[] = [];
      let next = 0;
      for (let step = 0; step < 200; step++) {
        if (rnd() < 0.6 || live.length === 0) {
          const r = {
            offset: next++,
            tenant: `t${Math.floor(rnd() * 4)}`,
            key: rnd() < 0.1 ? null : `k${Math.floor(rnd() * 12)}`,
          };
          d.add(r.offset, r.tenant, r.key);
          live.push(r);
        } else {
          // Mostly the front (read-backs take the oldest), sometimes anywhere.
          const i = rnd() < 0.7 ? 0 : Math.floor(rnd() * live.length);
          d.remove(live[i]!.offset);
          live.splice(i, 1);
        }
        const left = new Map<string, number>();
        for (let t = 0; t < 4; t++) if (rnd() < 0.6) left.set(`t${t}`, 1 + Math.floor(rnd() * 6));
        const max = 1 + Math.floor(rnd() * 20);
        const want = walk(live, new Map(left), max);
        // Only tenants with deferred records are asked (as Deferral.pick does).
        for (const t of [...left.keys()]) if (!d.tenants.has(t)) left.delete(t);
        expect(d.oldest(left, max), `seed ${seed} step ${step}`).toEqual(want);
        expect(d.size).toBe(live.length);
        expect(d.tracker.deferredFloor).toBe(live[0]?.offset);
      }
    }
  });
});
