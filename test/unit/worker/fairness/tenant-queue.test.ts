import { describe, expect, it } from 'vitest';
import { HEADERS } from '../../../../src/headers.js';
import type { Clock, TimerHandle } from '../../../../src/timing/clock.js';
import { Dispatcher } from '../../../../src/worker/dispatcher.js';
import {
  LocalTenantTokens,
  NO_TENANT,
  TenantQueue,
  type TenantQueueOptions,
} from '../../../../src/worker/fairness/tenant-queue.js';
import { KeyScheduler, type OrderingMode } from '../../../../src/worker/key-scheduler.js';
import { RunState } from '../../../../src/worker/run-state.js';
import type { WorkItem } from '../../../../src/worker/work-item.js';
import { TenantShares } from '../../../sim/invariants.js';

interface J {
  tp: string;
  key: string | null;
  seq: number;
  tenant: string | undefined;
  lane?: string | undefined;
}
let seq = 0;
const job = (tenant: string, key: string | null = `${tenant}-${seq}`, tp = 't:0'): J => ({
  tp,
  key,
  seq: seq++,
  tenant,
});

function setup(mode: OrderingMode, opts: Partial<TenantQueueOptions> = {}) {
  const time = { now: 0 };
  const queue = new TenantQueue<J>({ fair: true, now: () => time.now, ...opts });
  const scheduler = new KeyScheduler<J>(mode, false, queue);
  return { time, queue, scheduler };
}

const drain = (s: KeyScheduler<J>, q: TenantQueue<J>, n: number): J[] => {
  const out: J[] = [];
  for (let i = 0; i < n; i++) {
    const j = s.nextRunnable();
    if (!j) break;
    out.push(j);
    s.finish(j);
    q.finished(j);
  }
  return out;
};

describe('TenantQueue (weighted deficit round robin and limits)', () => {
  it('a tenant with a backlog gets its turn and no more: small tenants start within one round', () => {
    const { queue, scheduler } = setup('key');
    for (let i = 0; i < 1000; i++) scheduler.add(job('bulk'));
    for (let i = 0; i < 5; i++) for (const t of ['a', 'b', 'c']) scheduler.add(job(t));
    const order = drain(scheduler, queue, 20).map((j) => j.tenant);
    expect(order.slice(0, 20)).toEqual([
      ...['bulk', 'a', 'b', 'c'],
      ...['bulk', 'a', 'b', 'c'],
      ...['bulk', 'a', 'b', 'c'],
      ...['bulk', 'a', 'b', 'c'],
      ...['bulk', 'a', 'b', 'c'],
    ]);
    expect(drain(scheduler, queue, 5).map((j) => j.tenant)).toEqual(['bulk', 'bulk', 'bulk', 'bulk', 'bulk']);
  });

  it('weights: gold 4 gets four starts for every one of silver', () => {
    const { queue, scheduler } = setup('unordered', { weights: { gold: 4, half: 0.5 } });
    for (let i = 0; i < 100; i++) for (const t of ['silver', 'gold', 'half']) scheduler.add(job(t));
    const order = drain(scheduler, queue, 110).map((j) => j.tenant);
    const count = (t: string) => order.filter((x) => x === t).length;
    expect(count('gold')).toBe(80);
    expect(count('silver')).toBe(20);
    expect(count('half')).toBe(10);
  });

  it('per-tenant concurrency: a tenant at its cap is passed over, the others start', () => {
    const { queue, scheduler } = setup('unordered', { tenantConcurrency: 2 });
    for (let i = 0; i < 5; i++) scheduler.add(job('a'));
    scheduler.add(job('b'));
    const a1 = scheduler.nextRunnable()!;
    const b1 = scheduler.nextRunnable()!;
    const a2 = scheduler.nextRunnable()!;
    expect([a1.tenant, b1.tenant, a2.tenant]).toEqual(['a', 'b', 'a']);
    expect(scheduler.nextRunnable()).toBeUndefined();
    expect(scheduler.hasRunnable).toBe(true);
    queue.finished(a1);
    expect(scheduler.nextRunnable()?.tenant).toBe('a');
    expect(queue.runningOf('a')).toBe(2);
  });

  it('per-tenant rate: over it the job waits, and wakeInMs says when its token is due', () => {
    const time = { now: 0 };
    const { queue, scheduler } = setup('unordered', {
      tenantTokens: new LocalTenantTokens({ max: 2, perMs: 1000 }, () => time.now),
    });
    for (let i = 0; i < 4; i++) scheduler.add(job('a'));
    scheduler.add(job('b'));
    // The buckets read `time` of this test, the queue's own clock is unused here.
    const got = drain(scheduler, queue, 10).map((j) => j.tenant);
    expect(got).toEqual(['a', 'b', 'a']);
    expect(queue.wakeInMs()).toBe(500);
    time.now = 500;
    expect(drain(scheduler, queue, 10).map((j) => j.tenant)).toEqual(['a']);
    time.now = 1000;
    expect(drain(scheduler, queue, 10).map((j) => j.tenant)).toEqual(['a']);
  });

  it('per-key concurrency and rate (unordered: a key may have several runnable jobs)', () => {
    const { time, queue, scheduler } = setup('unordered', {
      keyConcurrency: 2,
      keyRate: { max: 3, perMs: 1000 },
    });
    for (let i = 0; i < 6; i++) scheduler.add(job('a', 'k'));
    scheduler.add(job('a', 'other'));
    const first = [scheduler.nextRunnable()!, scheduler.nextRunnable()!, scheduler.nextRunnable()!];
    expect(first.map((j) => j.key)).toEqual(['k', 'k', 'other']);
    expect(scheduler.nextRunnable()).toBeUndefined();
    queue.finished(first[0]!);
    expect(scheduler.nextRunnable()?.key).toBe('k');
    queue.finished(first[1]!);
    // Three starts of k used its bucket up: the next waits for a token.
    expect(scheduler.nextRunnable()).toBeUndefined();
    expect(queue.wakeInMs()).toBe(334);
    time.now = 334;
    expect(scheduler.nextRunnable()?.key).toBe('k');
  });

  it('fair: false hands out the oldest job first, limits still apply', () => {
    const { queue, scheduler } = setup('unordered', { fair: false, tenantConcurrency: 2 });
    const jobs = [job('bulk'), job('bulk'), job('bulk'), job('small'), job('bulk')];
    for (const j of jobs) scheduler.add(j);
    expect([scheduler.nextRunnable(), scheduler.nextRunnable(), scheduler.nextRunnable()]).toEqual([
      jobs[0],
      jobs[1],
      jobs[3],
    ]);
    expect(queue.waitingByTenant().get('bulk')).toBe(2);
  });

  it('random workload: lanes never overlap and start in order; while a tenant waits, each other tenant starts at most a turn per turn it needs', () => {
    for (let round = 0; round < 20; round++) {
      let r = round * 7919 + 1;
      const rand = (n: number) => {
        r = (r * 48271) % 2147483647;
        return r % n;
      };
      // t4 stands for jobs without a tenant (release records): the queue files them under NO_TENANT.
      const weights: Record<string, number> = { t0: 3, t1: 1, t2: 2, t3: 0.5 };
      const weight = (name: string) => weights[name] ?? 1;
      const { queue, scheduler } = setup('key', { weights, tenantConcurrency: 5 });
      const running: J[] = [];
      const activeLanes = new Set<string>();
      const lastStarted = new Map<string, number>();
      const shares = new TenantShares(weight, (_kind, text) => expect.fail(text));
      for (let step = 0; step < 3000; step++) {
        if (rand(3) === 0 || running.length > 8) {
          const j = running.splice(rand(Math.max(1, running.length)), 1)[0];
          if (j) {
            activeLanes.delete(`${j.tp}/${j.key}`);
            scheduler.finish(j);
            queue.finished(j);
          }
        }
        const i = rand(5);
        const added = job(`t${i}`, `t${i}-k${rand(5)}`, `t:${rand(2)}`);
        if (i === 4) added.tenant = undefined;
        scheduler.add(added);
        // Tenants with runnable jobs, under their cap, before this start.
        const runnable = [...queue.waitingByTenant().keys()].filter((n) => queue.runningOf(n) < 5);
        const j = scheduler.nextRunnable();
        if (!j) {
          shares.waiting(new Set(runnable));
          continue;
        }
        const lane = `${j.tp}/${j.key}`;
        expect(activeLanes.has(lane)).toBe(false);
        expect(j.seq).toBeGreaterThan(lastStarted.get(lane) ?? -1);
        activeLanes.add(lane);
        lastStarted.set(lane, j.seq);
        running.push(j);
        shares.started(j.tenant ?? NO_TENANT, runnable, '');
      }
    }
  });
});

/** A manual clock for the dispatcher test. */
class ManualClock implements Clock {
  t = 0;
  timers: { at: number; fn: () => void }[] = [];
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const timer = { at: this.t + ms, fn };
    this.timers.push(timer);
    return timer;
  }
  clearTimeout(handle: TimerHandle | undefined): void {
    this.timers = this.timers.filter((x) => x !== handle);
  }
  advance(ms: number): void {
    this.t += ms;
    const due = this.timers.filter((x) => x.at <= this.t);
    this.timers = this.timers.filter((x) => x.at > this.t);
    for (const x of due) x.fn();
  }
}

describe('Dispatcher with tenants', () => {
  it('a job over its rate waits without a slot; other tenants take the slots; it starts when its token is due', () => {
    const clock = new ManualClock();
    const state = new RunState();
    state.phase = 'running';
    const started: WorkItem[] = [];
    const tenants = new TenantQueue<WorkItem>({
      fair: true,
      now: () => clock.now(),
      tenantTokens: new LocalTenantTokens({ max: 1, perMs: 1000 }, () => clock.now()),
    });
    const dispatcher = new Dispatcher({
      concurrency: 2,
      ordering: 'unordered',
      clock,
      state,
      tenants,
      run: async (item) => {
        started.push(item);
      },
      finished: () => undefined,
    });
    const item = (tenant: string, n: number) =>
      ({ tp: 't:0', key: `${tenant}${n}`, seq: seq++, tenant, laneFreed: false }) as unknown as WorkItem;
    const limited = [item('a', 1), item('a', 2), item('a', 3)];
    for (const i of limited) dispatcher.add(i);
    dispatcher.pump();
    expect(started.map((i) => i.key)).toEqual(['a1']);
    dispatcher.settle(started[0]!);
    // a2 waits for a token and holds no slot: b's jobs start in both slots.
    expect(dispatcher.inflight).toBe(0);
    const b = [item('b', 1), item('b', 2)];
    for (const i of b) dispatcher.add(i);
    dispatcher.pump();
    expect(started.map((i) => i.key)).toEqual(['a1', 'b1']);
    expect(dispatcher.inflight).toBe(1);
    clock.advance(999);
    expect(started.length).toBe(2);
    clock.advance(1);
    expect(started.map((i) => i.key)).toEqual(['a1', 'b1', 'a2']);
    expect(dispatcher.inflight).toBe(2);
  });

  it('a release whose record is done no longer counts against its tenant: the next release record starts (sim seed 16467)', () => {
    const clock = new ManualClock();
    const state = new RunState();
    state.phase = 'running';
    const started: WorkItem[] = [];
    const tenants = new TenantQueue<WorkItem>({ fair: true, now: () => clock.now(), tenantConcurrency: 1 });
    const dispatcher = new Dispatcher({
      ...{ concurrency: 4, ordering: 'key', clock, state, tenants },
      run: async (item) => {
        started.push(item);
      },
      finished: () => undefined,
    });
    // Release records (and the releases a worker makes itself) have no tenant: NO_TENANT.
    const release = (key: string) =>
      ({
        tp: 't:0',
        key,
        seq: seq++,
        tenant: NO_TENANT,
        laneFreed: false,
        rawHeaders: { [HEADERS.release]: Buffer.from('job-1') },
      }) as unknown as WorkItem;
    const first = release('k1');
    const second = release('k2');
    dispatcher.add(first);
    dispatcher.add(second);
    dispatcher.pump();
    expect(started).toEqual([first]);
    // The first release wrote that its key is being released: its record is done, its lane free,
    // and its parked jobs run in its slot for as long as they take.
    dispatcher.releaseLane(first);
    expect(started).toEqual([first, second]);
    expect(dispatcher.inflight).toBe(2);
    expect(tenants.runningOf(NO_TENANT)).toBe(1);
    dispatcher.settle(first);
    expect(tenants.runningOf(NO_TENANT)).toBe(1);
    dispatcher.settle(second);
    expect(tenants.runningOf(NO_TENANT)).toBe(0);
  });
});
