import { describe, expect, it } from 'vitest';
import type { FetchedBatch, GroupHooks, OffsetCommit } from '../../src/ports.js';
import { ChildClock, EPOCH, VirtualTime } from './clock.js';
import { Cluster, Group, MemberPort, type ModelObserver, type ModelOptions } from './kafka-model.js';
import { Rng } from './random.js';

const opts: ModelOptions = {
  partitionsConsumedConcurrently: 4,
  maxBatch: 1,
  fetchDelayMax: 0,
  joinDelayMax: 1,
  noticeDelayMax: 0,
  heartbeatIntervalMs: 1,
  commitLatencyMax: 0,
  committedLatencyMax: 0,
  commitFailRate: 0,
  ambiguousCommitRate: 0,
  groupRebalanceTimeoutMs: 1000,
  sessionTimeoutMs: 500,
  staleOnRevoke: false,
  pauseSurvivesRejoin: true,
  consumerRestartDelayMax: 100,
  metadataMaxBytes: 4096,
};

/** The model with a fake core per member: records batches and assignments, drains on demand. */
function setup(partitions = 2, overrides: Partial<ModelOptions> = {}) {
  const time = new VirtualTime();
  const cluster = new Cluster(time);
  cluster.addTopic('jobs', partitions);
  const tps = Array.from({ length: partitions }, (_, p) => `jobs:${p}`);
  const applied: { member: string; commit: OffsetCommit }[] = [];
  const expelled: string[] = [];
  const observer: ModelObserver = {
    trace: () => undefined,
    violation: (kind, text) => {
      throw new Error(`${kind}: ${text}`);
    },
    commitSent: () => undefined,
    commitApplied: (member, commit) => applied.push({ member: member.id, commit }),
    assigned: () => undefined,
    lostAll: () => undefined,
    drainStarted: () => undefined,
    drainSettled: () => undefined,
    expelled: (m, why) => expelled.push(`${m.id} ${why}`),
  };
  const group = new Group(time, cluster, tps, { ...opts, ...overrides }, new Rng(1), observer, {
    commitOutage: false,
  });
  const append = (partition: number, n = 1) => {
    for (let i = 0; i < n; i++)
      cluster.append('jobs', partition, { key: null, value: Buffer.from('v'), headers: {}, rid: i });
  };
  /** Runs timers (draining microtasks after each) until `ms` of virtual time passed. */
  const advance = async (ms: number) => {
    const until = time.now + ms;
    for (;;) {
      await new Promise<void>((r) => setImmediate(r));
      const next = time.peek();
      if (next === undefined || next > until) break;
      time.next()!.fn();
    }
    time.now = Math.max(time.now, until);
    await new Promise<void>((r) => setImmediate(r));
  };
  /** Advances time until `p` settles (a commit answers on the member's clock). */
  const settle = async <T>(p: Promise<T>): Promise<T> => {
    let done = false;
    const watched = p.finally(() => {
      done = true;
    });
    watched.catch(() => undefined);
    for (let i = 0; i < 1000 && !done; i++) await advance(1);
    return watched;
  };
  const member = (id: string, behaviour: { drain?: () => Promise<void>; keepBatches?: boolean } = {}) => {
    const port = new MemberPort(id, group, new ChildClock(time, id), new Rng(2));
    const seen = {
      batches: [] as FetchedBatch[],
      assignments: [] as Record<string, readonly number[]>[],
      rejoins: 0,
    };
    const hooks: GroupHooks = {
      beforeRejoin: () => {
        seen.rejoins++;
        return behaviour.drain ? behaviour.drain() : Promise.resolve();
      },
      assigned: (a) => seen.assignments.push(a),
      crashed: () => undefined,
    };
    const start = () =>
      port.start(hooks, async (batch) => {
        seen.batches.push(batch);
        if (!behaviour.keepBatches) for (const r of batch.records) batch.resolveOffset(r.offset);
      });
    return { port, seen, start };
  };
  return { time, cluster, group, append, advance, settle, member, applied, expelled };
}

const offsetsOf = (batches: FetchedBatch[], partition: number) =>
  batches.filter((b) => b.partition === partition).flatMap((b) => b.records.map((r) => Number(r.offset)));

describe('virtual time', () => {
  it('runs timers in due order, ties in creation order, and a disposed clock runs none', () => {
    const time = new VirtualTime();
    const a = new ChildClock(time, 'a');
    const b = new ChildClock(time, 'b');
    const ran: string[] = [];
    a.setTimeout(() => ran.push('a20'), 20);
    b.setTimeout(() => ran.push('b10'), 10);
    a.setTimeout(() => ran.push('a10'), 10);
    const cancelled = a.setTimeout(() => ran.push('never'), 5);
    a.clearTimeout(cancelled);
    b.setTimeout(() => ran.push('b30'), 30);
    b.dispose();
    for (let t = time.next(); t; t = time.next()) t.fn();
    expect(ran).toEqual(['a10', 'a20']);
    expect(time.now).toBe(EPOCH + 20);
  });

  it('a seed gives the same stream every time', () => {
    const x = new Rng(42);
    const y = new Rng(42);
    const xs = Array.from({ length: 5 }, () => x.int(0, 1000));
    expect(Array.from({ length: 5 }, () => y.int(0, 1000))).toEqual(xs);
    expect(Rng.derive(42, 1).next()).not.toBe(Rng.derive(42, 2).next());
  });
});

describe('consumer group model', () => {
  it('assigns round robin over the members and moves everything to the one left', async () => {
    const s = setup(4);
    const m1 = s.member('m1');
    const m2 = s.member('m2');
    await m1.start();
    await s.advance(5);
    expect(m1.seen.assignments.at(-1)).toEqual({ jobs: [0, 1, 2, 3] });
    await m2.start();
    await s.advance(5);
    expect(m1.seen.rejoins).toBe(1);
    expect(m1.seen.assignments.at(-1)).toEqual({ jobs: [0, 2] });
    expect(m2.seen.assignments.at(-1)).toEqual({ jobs: [1, 3] });
    await m2.port.stop();
    await s.advance(5);
    expect(m1.seen.assignments.at(-1)).toEqual({ jobs: [0, 1, 2, 3] });
    expect(s.group.generation).toBe(3);
  });

  it('fetches again from the committed offset after a rejoin, also for a partition it kept', async () => {
    const s = setup(1);
    const m = s.member('m');
    s.append(0, 3);
    await m.start();
    await s.advance(10);
    expect(offsetsOf(m.seen.batches, 0)).toEqual([0, 1, 2]);
    await s.settle(m.port.commit([{ topic: 'jobs', partition: 0, offset: 1, metadata: '' }]));
    s.group.trigger('test');
    await s.advance(10);
    expect(m.seen.assignments).toHaveLength(2);
    expect(offsetsOf(m.seen.batches, 0)).toEqual([0, 1, 2, 1, 2]);
  });

  it('an unresolved record is fetched again; a paused partition is not, until resumed', async () => {
    const s = setup(1);
    const m = s.member('m', { keepBatches: true });
    s.append(0, 1);
    await m.start();
    await s.advance(3);
    expect(m.seen.batches.length).toBeGreaterThan(1);
    const resume = m.seen.batches[0]!.pause();
    const before = m.seen.batches.length;
    await s.advance(20);
    expect(m.seen.batches.length - before).toBeLessThanOrEqual(1);
    const paused = m.seen.batches.length;
    s.group.trigger('rejoin keeps the pause');
    await s.advance(20);
    expect(m.seen.batches.length).toBe(paused);
    resume();
    await s.advance(2);
    expect(m.seen.batches.length).toBeGreaterThan(paused);
  });

  it('refuses metadata over 4,096 bytes like OFFSET_METADATA_TOO_LARGE', async () => {
    const s = setup(1);
    const m = s.member('m');
    await m.start();
    await s.advance(5);
    await expect(
      s.settle(m.port.commit([{ topic: 'jobs', partition: 0, offset: 0, metadata: 'x'.repeat(4097) }])),
    ).rejects.toMatchObject({ type: 'OFFSET_METADATA_TOO_LARGE' });
    await s.settle(m.port.commit([{ topic: 'jobs', partition: 0, offset: 0, metadata: 'x'.repeat(4096) }]));
    expect(s.group.committed.get('jobs:0')?.metadata).toHaveLength(4096);
  });

  it('takes commits of the old generation until the member rejoins, and refuses them after (ILLEGAL_GENERATION)', async () => {
    const s = setup(1, { commitLatencyMax: 0 });
    let release: (() => void) | undefined;
    const m1 = s.member('m1', { drain: () => new Promise<void>((r) => (release = r)) });
    const m2 = s.member('m2');
    await m1.start();
    await s.advance(5);
    await m2.start();
    await s.advance(5);
    // Rebalancing, m1 still draining: its generation still counts.
    await s.settle(m1.port.commit([{ topic: 'jobs', partition: 0, offset: 0, metadata: 'drain' }]));
    expect(s.applied.map((a) => a.member)).toEqual(['m1']);
    // Sent in the old generation, answered after the join: refused.
    const s2 = setup(1, { commitLatencyMax: 30, joinDelayMax: 1 });
    const a = s2.member('a');
    await a.start();
    await s2.advance(5);
    const b = s2.member('b');
    let outcome: string | undefined;
    let tries = 0;
    while (outcome !== 'ILLEGAL_GENERATION' && tries++ < 50) {
      const sent = a.port.commit([{ topic: 'jobs', partition: 0, offset: 0, metadata: '' }]).then(
        () => 'ok',
        (e: { type?: string }) => e.type,
      );
      if (tries === 1) await b.start();
      else s2.group.trigger('again');
      outcome = await s2.settle(sent);
    }
    expect(outcome).toBe('ILLEGAL_GENERATION');
    release!();
    await s.advance(5);
    expect(m1.seen.assignments).toHaveLength(2);
  });

  it('a member whose drain outlasts the rebalance timeout is expelled: its commits are refused, it rejoins later', async () => {
    const s = setup(2, { groupRebalanceTimeoutMs: 50 });
    let release: (() => void) | undefined;
    const m1 = s.member('m1', { drain: () => new Promise<void>((r) => (release = r)) });
    const m2 = s.member('m2');
    await m1.start();
    await s.advance(5);
    await m2.start();
    await s.advance(100);
    expect(m2.seen.assignments.at(-1)).toEqual({ jobs: [0, 1] });
    expect(m1.port.phase).toBe('out');
    await expect(
      s.settle(m1.port.commit([{ topic: 'jobs', partition: 0, offset: 0, metadata: '' }])),
    ).rejects.toMatchObject({
      type: 'ILLEGAL_GENERATION',
    });
    release!();
    await s.advance(20);
    const shares = [m1.seen.assignments.at(-1)?.jobs, m2.seen.assignments.at(-1)?.jobs];
    expect(shares.map((p) => p?.length)).toEqual([1, 1]);
    expect(new Set(shares.flat())).toEqual(new Set([0, 1]));
  });

  it('heartbeat rejects with REBALANCE_IN_PROGRESS once a rebalance starts; the batch goes inactive at the join', async () => {
    const s = setup(1);
    let hold: (() => void) | undefined;
    const m = s.member('m', { drain: () => new Promise<void>((r) => (hold = r)) });
    s.append(0, 1);
    await m.start();
    await s.advance(5);
    const batch = m.seen.batches[0]!;
    await batch.heartbeat();
    expect(batch.isActive()).toBe(true);
    s.group.trigger('test');
    // A heartbeat goes out once the interval passed (kafkajs), and is answered REBALANCE_IN_PROGRESS.
    await s.advance(1);
    await expect(batch.heartbeat()).rejects.toMatchObject({ type: 'REBALANCE_IN_PROGRESS' });
    await s.advance(1);
    expect(batch.isActive()).toBe(true);
    hold!();
    await s.advance(5);
    expect(batch.isActive()).toBe(false);
  });

  it('a drain three sessions long holds the rejoin and heartbeats meanwhile: the member is not expelled', async () => {
    const s = setup(1, { sessionTimeoutMs: 100, heartbeatIntervalMs: 10 });
    const m1 = s.member('m1', { drain: () => new Promise<void>((r) => s.time.schedule(r, 300)) });
    await m1.start();
    s.append(0, 1);
    await s.advance(50);
    await s.member('m2').start();
    await s.advance(400);
    expect(m1.seen.rejoins).toBe(1);
    expect(s.expelled).toEqual([]);
  });

  it('a live member the coordinator hears nothing from for a session is expelled', async () => {
    const s = setup(1, { sessionTimeoutMs: 100, heartbeatIntervalMs: 10 });
    // Its batch never returns and never heartbeats: kafkajs' fetch loop waits for it.
    const m1 = s.member('m1');
    const port = m1.port;
    await port.start(
      { beforeRejoin: async () => undefined, assigned: () => undefined, crashed: () => undefined },
      () => new Promise<void>(() => undefined),
    );
    s.append(0, 1);
    await s.advance(150);
    expect(s.expelled).toEqual(['m1 session']);
  });

  it('a dead member keeps its partitions until its session times out', async () => {
    const s = setup(2, { sessionTimeoutMs: 300 });
    const m1 = s.member('m1');
    const m2 = s.member('m2');
    await m1.start();
    await m2.start();
    await s.advance(5);
    expect(m2.seen.assignments.at(-1)).toEqual({ jobs: [1] });
    m1.port.alive = false;
    m1.port.kill();
    m1.port.clock.dispose();
    await s.advance(200);
    expect(m2.seen.assignments.at(-1)).toEqual({ jobs: [1] });
    await s.advance(200);
    expect(m2.seen.assignments.at(-1)).toEqual({ jobs: [0, 1] });
    await expect(m1.port.commit([])).rejects.toThrow('dead process');
  });
});
