import { describe, expect, it } from 'vitest';
import { KeyScheduler, type OrderingMode } from '../../../src/worker/key-scheduler.js';

let seq = 0;
const job = (tp: string, key: string | null) => ({ tp, key, seq: seq++ });
type J = ReturnType<typeof job>;

function drain(s: KeyScheduler<J>): J[] {
  const out: J[] = [];
  for (let j = s.nextRunnable(); j; j = s.nextRunnable()) out.push(j);
  return out;
}

describe('KeyScheduler', () => {
  it('key mode: one job per key at a time, in order; other keys run alongside', () => {
    const s = new KeyScheduler<J>('key');
    const a1 = job('t:0', 'a');
    const a2 = job('t:0', 'a');
    const b1 = job('t:0', 'b');
    const a3 = job('t:0', 'a');
    for (const j of [a1, a2, b1, a3]) s.add(j);
    expect(drain(s)).toEqual([a1, b1]);
    s.finish(b1);
    expect(drain(s)).toEqual([]);
    s.finish(a1);
    expect(drain(s)).toEqual([a2]);
    s.finish(a2);
    expect(drain(s)).toEqual([a3]);
    s.finish(a3);
    expect(s.waiting).toBe(0);
  });

  it('the same key on two partitions is two lanes', () => {
    const s = new KeyScheduler<J>('key');
    const x = job('t:0', 'k');
    const y = job('t:1', 'k');
    s.add(x);
    s.add(y);
    expect(drain(s)).toEqual([x, y]);
  });

  it('null keys and unordered mode never wait', () => {
    for (const mode of ['key', 'unordered'] as OrderingMode[]) {
      const s = new KeyScheduler<J>(mode);
      const jobs = mode === 'key' ? [job('t:0', null), job('t:0', null)] : [job('t:0', 'a'), job('t:0', 'a')];
      for (const j of jobs) s.add(j);
      expect(drain(s)).toEqual(jobs);
    }
  });

  it('partition mode: one job per partition at a time', () => {
    const s = new KeyScheduler<J>('partition');
    const p0a = job('t:0', 'a');
    const p0b = job('t:0', 'b');
    const p1a = job('t:1', 'a');
    for (const j of [p0a, p0b, p1a]) s.add(j);
    expect(drain(s)).toEqual([p0a, p1a]);
    s.finish(p0a);
    expect(drain(s)).toEqual([p0b]);
  });

  it('hands out the oldest runnable job across partitions', () => {
    const s = new KeyScheduler<J>('key');
    const jobs = [job('t:2', 'a'), job('t:0', 'b'), job('t:1', 'c'), job('t:0', 'd')];
    for (const j of [...jobs].reverse()) s.add(j);
    expect(drain(s).map((j) => j.seq)).toEqual(jobs.map((j) => j.seq));
  });

  it('skips jobs the caller holds back, keeping them for later', () => {
    const s = new KeyScheduler<J>('key');
    const a = job('t:0', 'a');
    const b = job('t:1', 'b');
    s.add(a);
    s.add(b);
    expect(s.nextRunnable((j) => j.tp === 't:0')).toBe(b);
    expect(s.nextRunnable()).toBe(a);
  });

  it('dropping a partition forgets its waiting jobs and frees their lanes', () => {
    const s = new KeyScheduler<J>('key');
    const running = job('t:0', 'a');
    const behind = job('t:0', 'a');
    const idle = job('t:0', 'b');
    const other = job('t:1', 'a');
    for (const j of [running, behind, idle, other]) s.add(j);
    expect(s.nextRunnable()).toBe(running);
    const dropped = s.dropPartition('t:0');
    expect(dropped.sort((x, y) => x.seq - y.seq)).toEqual([behind, idle]);
    expect(drain(s)).toEqual([other]);
    s.finish(running);
    // Re-assigned later: key b of t:0 must not wait behind a phantom.
    const again = job('t:0', 'b');
    s.add(again);
    expect(drain(s)).toEqual([again]);
    expect(s.waiting).toBe(0);
  });

  it('random workload: never two active jobs of one lane, starts in order', () => {
    const s = new KeyScheduler<J>('key');
    const all: J[] = [];
    for (let i = 0; i < 5000; i++) all.push(job(`t:${i % 3}`, `k${Math.floor(Math.random() * 40)}`));
    for (const j of all) s.add(j);
    const active = new Map<string, J>();
    const started: J[] = [];
    const running: J[] = [];
    while (started.length < all.length) {
      for (let j = s.nextRunnable(); j; j = s.nextRunnable()) {
        const lane = `${j.tp}/${j.key}`;
        expect(active.has(lane)).toBe(false);
        active.set(lane, j);
        started.push(j);
        running.push(j);
      }
      const idx = Math.floor(Math.random() * running.length);
      const [done] = running.splice(idx, 1);
      active.delete(`${done!.tp}/${done!.key}`);
      s.finish(done!);
    }
    const byLane = new Map<string, number[]>();
    for (const j of started)
      byLane.set(`${j.tp}/${j.key}`, [...(byLane.get(`${j.tp}/${j.key}`) ?? []), j.seq]);
    for (const seqs of byLane.values()) expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
  });
});
