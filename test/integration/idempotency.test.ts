import { Redis } from 'ioredis';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { RedisIdempotencyStore } from '../../src/idempotency/redis-store.js';
import { createKafka } from '../../src/kafka/client.js';
import { createLogger } from '../../src/observability/logger.js';
import { JobProducer } from '../../src/producer/job-producer.js';
import type { WorkerOptions } from '../../src/worker/options.js';
import { Worker } from '../../src/worker/worker.js';
import { jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { enqueuePayments, type Payment, paymentSchema } from '../support/jobs.js';
import { WorkerFleet } from '../support/processes.js';
import { TcpProxy } from '../support/proxy.js';
import { needRedis, testRedis } from '../support/redis.js';

const quiet = createLogger({ level: 'error' });
const redis = new Redis({ host: '127.0.0.1', port: testRedis()?.port ?? 6379, lazyConnect: true });
let fleet: WorkerFleet | undefined;
afterEach(async () => {
  await fleet?.killAll();
  fleet = undefined;
});
afterAll(async () => {
  await redis.quit().catch(() => undefined);
});

function payment(i: number, key = 'acct-1'): Payment {
  return {
    paymentId: `p${i}`,
    accountId: key,
    amountCents: i,
    currency: 'EUR',
    sequence: i,
    createdAt: Date.now(),
    memo: null,
  };
}

/** Enqueues payments on acct-1 with the given job ids (`data` from their index). */
async function enqueueIds(topic: string, jobIds: string[]): Promise<void> {
  const producer = new JobProducer<Payment>({
    brokers: stack().brokers,
    registry: { url: stack().registryUrl },
    topic,
    schema: paymentSchema,
    logger: quiet,
  });
  await producer.connect();
  for (const [i, jobId] of jobIds.entries())
    await producer.enqueue({ key: 'acct-1', data: payment(i), jobId });
  await producer.disconnect();
}

function worker(
  topic: string,
  opts: Partial<WorkerOptions<Payment>> & Pick<WorkerOptions<Payment>, 'handler'>,
) {
  return new Worker<Payment>({
    brokers: stack().brokers,
    registry: { url: stack().registryUrl },
    topic,
    groupId: uniqueName(`${topic}-g`),
    retry: { tiers: [] },
    logger: quiet,
    commitIntervalMs: 200,
    ...opts,
  });
}

async function dlqDepth(topic: string): Promise<number> {
  const admin = createKafka(stack().connection).admin();
  await admin.connect();
  const n = (await admin.fetchTopicOffsets(`${topic}.dlq`)).reduce((s, o) => s + Number(o.high), 0);
  await admin.disconnect();
  return n;
}

describe('idempotency with a real Redis', () => {
  it.for(['redis', 'memory'] as const)(
    'the same job id enqueued three times runs its side effect once (%s store)',
    async (kind, { skip }) => {
      const port = kind === 'redis' ? needRedis({ skip }).port : 0;
      const { topic, cleanup } = await jobTopic('idem-dup', { partitions: 2 });
      await enqueueIds(topic, [
        'order-42-capture',
        'order-42-capture',
        'order-42-capture',
        'order-43-capture',
      ]);
      const effects: string[] = [];
      const store =
        kind === 'redis' ? new RedisIdempotencyStore({ port, keyPrefix: `${uniqueName('t')}:` }) : 'memory';
      const w = worker(topic, {
        idempotency: { store, leaseMs: 5000 },
        handler: async (job) => void effects.push(job.id),
      });
      let duplicates = 0;
      w.on('job:duplicate', () => void duplicates++);
      await w.start();
      await waitUntil(() => effects.length === 2 && duplicates === 2, {
        timeoutMs: 20_000,
        what: '2 runs and 2 duplicates',
      });
      const metrics = await w.metrics.registry.getSingleMetricAsString('queue_jobs_total');
      await w.stop();
      if (typeof store !== 'string') await store.close();
      expect(effects.sort()).toEqual(['order-42-capture', 'order-43-capture']);
      expect(metrics).toMatch(/outcome="duplicate"} 2/);
      expect(metrics).toMatch(/outcome="completed"} 2/);
      await cleanup();
    },
  );

  it('a job whose lease holder died is taken over after leaseMs, not before', async ({ skip }) => {
    const { port } = needRedis({ skip });
    const { topic, cleanup } = await jobTopic('idem-lease', { partitions: 1 });
    const prefix = `${uniqueName('lease')}:`;
    const store = new RedisIdempotencyStore({ port, keyPrefix: prefix });
    await enqueueIds(topic, ['held-by-a-dead-worker']);
    const leaseMs = 3000;
    const heldAt = Date.now();
    const groupId = uniqueName(`${topic}-g`);
    // The worker asks the store about `<group>/<topic>:<job id>` (its default scope).
    expect(await store.begin(`${groupId}/${topic}:held-by-a-dead-worker`, 'crashed-worker', leaseMs)).toBe(
      'acquired',
    );
    let startedAt = 0;
    const w = worker(topic, {
      groupId,
      idempotency: { store, leaseMs },
      handler: async () => {
        startedAt = Date.now();
      },
    });
    await w.start();
    await waitUntil(() => startedAt > 0, { timeoutMs: 20_000, what: 'takeover' });
    await w.stop();
    await store.close();
    const waited = startedAt - heldAt;
    console.info(`lease ${leaseMs} ms: taken over after ${waited} ms`);
    expect(waited).toBeGreaterThanOrEqual(leaseMs);
    expect(waited).toBeLessThan(leaseMs + 2500);
    await cleanup();
  });

  it('a job running longer than leaseMs keeps its lease (renewed): no one else can take it meanwhile', async ({
    skip,
  }) => {
    const { port } = needRedis({ skip });
    const { topic, cleanup } = await jobTopic('idem-renew', { partitions: 1 });
    const prefix = `${uniqueName('renew')}:`;
    const store = new RedisIdempotencyStore({ port, keyPrefix: prefix });
    await enqueueIds(topic, ['long-job']);
    const leaseMs = 1000;
    const groupId = uniqueName(`${topic}-g`);
    const id = `${groupId}/${topic}:long-job`;
    let startedAt = 0;
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const w = worker(topic, {
      groupId,
      idempotency: { store, leaseMs },
      handler: async () => {
        startedAt = Date.now();
        await gate;
      },
    });
    await w.start();
    await waitUntil(() => startedAt > 0, { timeoutMs: 20_000, what: 'the long job running' });
    // Four lease lengths into the job, a contender (another worker, as the store sees it) is refused,
    // and the lease's expiry stays within one lease length ahead: it is renewed, not long.
    const answers: string[] = [];
    const ttls: number[] = [];
    while (Date.now() - startedAt < 4 * leaseMs) {
      answers.push(await store.begin(id, 'another-worker', leaseMs));
      ttls.push(await redis.pttl(`${prefix}${id}`));
      await new Promise((r) => setTimeout(r, 200));
    }
    release();
    await waitUntil(async () => (await store.begin(id, 'another-worker', leaseMs)) === 'completed', {
      timeoutMs: 10_000,
      what: 'the done marker',
    });
    await w.stop();
    await store.close();
    console.info(
      `lease ${leaseMs} ms over a ${4 * leaseMs} ms job: answers ${[...new Set(answers)]}, ttl ${Math.min(...ttls)}–${Math.max(...ttls)} ms`,
    );
    expect(answers.length).toBeGreaterThanOrEqual(10);
    expect(new Set(answers)).toEqual(new Set(['busy']));
    expect(Math.min(...ttls)).toBeGreaterThan(0);
    expect(Math.max(...ttls)).toBeLessThanOrEqual(leaseMs);
    await cleanup();
  });

  it('Redis unreachable mid-run: no job runs without the store, none is dead-lettered, all complete after', async ({
    skip,
  }) => {
    const r = needRedis({ skip });
    const { topic, cleanup } = await jobTopic('idem-outage', { partitions: 3, tierDelays: [500] });
    const proxy = new TcpProxy(r.host, r.port);
    const port = await proxy.start();
    const store = new RedisIdempotencyStore({
      port,
      keyPrefix: `${uniqueName('outage')}:`,
      socketTimeoutMs: 500,
      connectTimeoutMs: 500,
    });
    await enqueuePayments(topic, 100, 20);
    const ran = new Set<string>();
    let outage = false;
    let ranDuringOutage = 0;
    const w = worker(topic, {
      retry: { tiers: [500] },
      idempotency: { store, leaseMs: 5000 },
      handler: async (job) => {
        if (outage) ranDuringOutage++;
        ran.add(job.id);
      },
    });
    await w.start();
    await waitUntil(() => ran.size === 100, { timeoutMs: 20_000, what: 'first 100' });
    await proxy.cut();
    outage = true;
    await enqueuePayments(topic, 100, 20);
    await new Promise((r) => setTimeout(r, 4000));
    const failures = await w.metrics.registry.getSingleMetricAsString('queue_failures_total');
    expect(ranDuringOutage).toBe(0);
    expect(failures).toMatch(/error_class="StoreUnavailable"} [1-9]/);
    outage = false;
    await proxy.restore();
    await waitUntil(() => ran.size === 200, { timeoutMs: 60_000, what: 'all 200 after Redis is back' });
    await w.stop();
    await store.close();
    await proxy.cut();
    expect(await dlqDepth(topic)).toBe(0);
    await cleanup();
  });

  it('two workers, SIGKILL one in the middle of long jobs, 20 times: every side effect exactly once', async ({
    skip,
  }) => {
    needRedis({ skip });
    const { topic, cleanup } = await jobTopic('idem-kill', { partitions: 4 });
    const groupId = uniqueName('idem-kill-g');
    const list = uniqueName('ledger');
    const jobs = 40;
    const { jobIds } = await enqueuePayments(topic, jobs, 8, { memo: () => 'long' });
    // One job at a time per worker, so "in the middle of a long job" is exact: the victim is a
    // worker whose open job started under 400 ms ago (its side effect comes at 800 ms).
    fleet = new WorkerFleet({
      topic,
      groupId,
      concurrency: 1,
      redisPrefix: `${uniqueName('kill')}:`,
      leaseMs: 1500,
      sideEffectList: list,
      longMs: 800,
      sessionTimeoutMs: 6000,
    });
    fleet.start();
    fleet.start();
    let kills = 0;
    // Bounded, so that the waits after it still end before the test's timeout.
    const killUntil = Date.now() + 120_000;
    while (kills < 20 && Date.now() < killUntil) {
      const lines = fleet.read();
      const done = new Set(lines.filter((l) => l.kind === 'C').map((l) => l.jobId));
      if (done.size >= jobs) break;
      const now = Date.now();
      const fresh = lines.filter((l) => l.kind === 'S' && !done.has(l.jobId) && now - l.at < 400);
      const victim = fleet.alive.find((c) => fresh.some((l) => l.pid === String(c.pid)));
      if (victim) {
        await fleet.kill(victim, 'SIGKILL');
        kills++;
        fleet.start();
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    await waitUntil(() => fleet!.completedIds().size >= jobs, {
      timeoutMs: 120_000,
      intervalMs: 500,
      what: 'all jobs',
    });
    const effects = await redis.lrange(list, 0, -1);
    const counts = new Map<string, number>();
    for (const id of effects) counts.set(id, (counts.get(id) ?? 0) + 1);
    const starts = fleet.read().filter((l) => l.kind === 'S').length;
    console.info(`${kills} kills: ${starts} handler starts for ${jobs} jobs, ${effects.length} side effects`);
    expect(kills).toBeGreaterThanOrEqual(10);
    expect(new Set(counts.keys())).toEqual(new Set(jobIds));
    expect([...counts.values()].every((n) => n === 1)).toBe(true);
    await redis.del(list);
    await cleanup();
  }, 300_000);
});
