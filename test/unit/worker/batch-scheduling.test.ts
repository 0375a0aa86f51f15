import { describe, expect, it } from 'vitest';
import { KeyScheduler, type OrderingMode } from '../../../src/worker/key-scheduler.js';

let seq = 0;
const job = (tp: string, key: string | null, jobId?: string) => ({
  tp,
  key,
  seq: seq++,
  ...(jobId ? { jobId } : {}),
});
type J = ReturnType<typeof job>;
const names = (jobs: J[]) => jobs.map((j) => `${j.tp}/${j.key}#${j.seq}`);

describe('KeyScheduler.takeBatch', () => {
  it('key mode: several jobs of a key in order; the lane is held until every one of them finished', () => {
    const s = new KeyScheduler<J>('key', true);
    const [a1, a2, b1, a3] = [job('t:0', 'a'), job('t:0', 'a'), job('t:0', 'b'), job('t:0', 'a')];
    for (const j of [a1!, a2!, b1!, a3!]) s.add(j);
    expect(s.takeable).toBe(4);
    const batch = s.takeBatch(10);
    expect(batch).toEqual([a1, a2, b1, a3]);
    expect(s.takeable).toBe(0);
    // A later job of key a waits for the whole batch's a-jobs, whatever order they finish in.
    const a4 = job('t:0', 'a');
    s.add(a4);
    expect(s.takeable).toBe(0);
    s.finish(a3!);
    s.finish(a1!);
    expect(s.takeBatch(10)).toEqual([]);
    s.finish(a2!);
    expect(s.takeable).toBe(1);
    expect(s.takeBatch(10)).toEqual([a4]);
    s.finish(b1!);
    s.finish(a4);
    expect(s.waiting).toBe(0);
  });

  it('a full batch leaves the rest of a lane behind it; the next batch gets it only after', () => {
    const s = new KeyScheduler<J>('key', true);
    const jobs = [0, 1, 2, 3, 4].map(() => job('t:0', 'k'));
    for (const j of jobs) s.add(j);
    const first = s.takeBatch(3);
    expect(first).toEqual(jobs.slice(0, 3));
    expect(s.takeable).toBe(0);
    for (const j of first) s.finish(j);
    expect(s.takeable).toBe(2);
    expect(s.takeBatch(3)).toEqual(jobs.slice(3));
  });

  it('fills a batch across lanes, oldest heads first, then one per lane in turn', () => {
    const s = new KeyScheduler<J>('key', true);
    const [a1, b1, a2, b2, a3, c1] = [
      job('t:0', 'a'),
      job('t:0', 'b'),
      job('t:0', 'a'),
      job('t:0', 'b'),
      job('t:0', 'a'),
      job('t:1', 'c'),
    ];
    for (const j of [a1!, b1!, a2!, b2!, a3!, c1!]) s.add(j);
    expect(names(s.takeBatch(5))).toEqual(names([a1!, b1!, a2!, b2!, c1!]));
    expect(s.takeable).toBe(0);
  });

  it('partition mode: one batch per partition at a time, in offset order', () => {
    const s = new KeyScheduler<J>('partition', true);
    const p0 = [job('t:0', 'a'), job('t:0', 'b'), job('t:0', 'c')];
    const p1 = [job('t:1', 'a')];
    for (const j of [...p0, ...p1]) s.add(j);
    const batch = s.takeBatch(2);
    expect(batch).toEqual([p0[0], p1[0]]);
    // p0's other jobs wait for p0[0]'s batch.
    expect(s.takeBatch(10)).toEqual([]);
    s.finish(p0[0]!);
    expect(s.takeBatch(10)).toEqual([p0[1], p0[2]]);
  });

  it('unordered: no constraint', () => {
    const s = new KeyScheduler<J>('unordered', true);
    const jobs = [job('t:0', 'a'), job('t:0', 'a'), job('t:0', 'a')];
    for (const j of jobs) s.add(j);
    expect(s.takeBatch(2)).toEqual(jobs.slice(0, 2));
    expect(s.takeBatch(2)).toEqual(jobs.slice(2));
  });

  it('never two jobs with one job id in a batch: the second waits in its lane', () => {
    const s = new KeyScheduler<J>('key', true);
    const [x1, y, x2, z] = [
      job('t:0', 'k', 'x'),
      job('t:0', 'k', 'y'),
      job('t:0', 'k', 'x'),
      job('t:0', 'k', 'z'),
    ];
    for (const j of [x1!, y!, x2!, z!]) s.add(j);
    const first = s.takeBatch(10);
    expect(first).toEqual([x1, y]);
    for (const j of first) s.finish(j);
    expect(s.takeBatch(10)).toEqual([x2, z]);
  });

  it('a revoked partition leaves: takeable counts what is left', () => {
    const s = new KeyScheduler<J>('key', true);
    for (const j of [job('t:0', 'a'), job('t:0', 'a'), job('t:1', 'b'), job('t:1', null)]) s.add(j);
    expect(s.takeable).toBe(4);
    expect(s.dropPartition('t:0')).toHaveLength(2);
    expect(s.takeable).toBe(2);
    expect(s.takeBatch(10)).toHaveLength(2);
  });

  it.each(['key', 'partition', 'unordered'] as OrderingMode[])(
    '%s mode, random workload: takeable is exact; running batches never share a lane; lanes in order',
    (mode) => {
      let state = 7;
      const rand = () => {
        state = (state * 1103515245 + 12345) % 2 ** 31;
        return state / 2 ** 31;
      };
      const s = new KeyScheduler<J>(mode, true);
      const running: J[][] = [];
      const lastStart = new Map<string, number>();
      const held = new Set<string>();
      const lane = (j: J) =>
        mode === 'partition' ? j.tp : mode === 'key' && j.key !== null ? `${j.tp}/${j.key}` : undefined;
      for (let step = 0; step < 5000; step++) {
        const r = rand();
        if (r < 0.5)
          s.add(job(`t:${Math.floor(rand() * 3)}`, rand() < 0.1 ? null : `k${Math.floor(rand() * 6)}`));
        else if (r < 0.75) {
          const max = 1 + Math.floor(rand() * 8);
          const takeable = s.takeable;
          const batch = s.takeBatch(max);
          expect(batch.length).toBe(Math.min(max, takeable));
          const lanes = new Set<string>();
          for (const j of batch) {
            const l = lane(j);
            if (l === undefined) continue;
            expect(held.has(l)).toBe(false);
            expect(j.seq).toBeGreaterThan(lastStart.get(l) ?? -1);
            lastStart.set(l, j.seq);
            lanes.add(l);
          }
          for (const l of lanes) held.add(l);
          if (batch.length) running.push(batch);
        } else if (running.length > 0) {
          const batch = running.splice(Math.floor(rand() * running.length), 1)[0]!;
          for (const l of new Set(batch.map(lane))) if (l !== undefined) held.delete(l);
          for (const j of batch.reverse()) s.finish(j);
        }
        expect(s.takeable).toBeLessThanOrEqual(s.waiting);
      }
      const rest = s.takeable;
      expect(s.takeBatch(1_000_000)).toHaveLength(rest);
    },
  );
});
