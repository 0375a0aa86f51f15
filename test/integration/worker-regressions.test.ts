import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { HEADERS } from '../../src/headers.js';
import { RedisIdempotencyStore } from '../../src/idempotency/redis-store.js';
import { createKafka } from '../../src/kafka/client.js';
import type { Worker } from '../../src/worker/worker.js';
import { committedOffsets, jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { enqueuePayments, type Payment } from '../support/jobs.js';
import { rawConsume } from '../support/raw-kafka.js';
import { needRedis, testRedis } from '../support/redis.js';
import { paymentWorker } from '../support/worker.js';

// One test per defect found in the review of the worker split (issue 13) and per new-user defect
// (issue 20); each failed before its fix.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const redis = new Redis({ host: '127.0.0.1', port: testRedis()?.port ?? 6379, lazyConnect: true });
afterAll(async () => {
  await redis.quit().catch(() => undefined);
});

const worker = paymentWorker;

describe('worker regressions', () => {
  it('retry-later without a delay waits the first tier and is dead-lettered after retry.maxRetryLater (it looped at full speed)', async () => {
    const { topic, cleanup } = await jobTopic('retry-later', { partitions: 1, tierDelays: [300] });
    await enqueuePayments(topic, 1, 1);
    const runs: number[] = [];
    const w = worker(topic, uniqueName('retry-later-g'), {
      retry: { tiers: [300], inPlace: 0, maxAttempts: 5, maxRetryLater: 3 },
      classify: () => 'retry-later',
      handler: async () => {
        runs.push(Date.now());
        throw new Error('downstream says later');
      },
    });
    const dead: unknown[] = [];
    w.on('job:dead', (_item, error) => dead.push(error));
    await w.start();
    await waitUntil(() => dead.length === 1, { timeoutMs: 20_000, what: 'the job in the DLQ' });
    await sleep(700);
    await w.stop();
    expect(runs).toHaveLength(4); // the first run and maxRetryLater hops, then the DLQ
    for (let i = 1; i < runs.length; i++) expect(runs[i]! - runs[i - 1]!).toBeGreaterThanOrEqual(250);
    const [record] = await rawConsume(stack().brokers, `${topic}.dlq`, 1);
    expect(record!.headers[HEADERS.deadReason]).toBe('retry-later-exhausted');
    expect(record!.headers[HEADERS.retryLater]).toBe('3');
    expect(record!.headers[HEADERS.errorClass]).toBe('Error');
    await cleanup();
  });

  it('stop() while start() is still connecting or joining: the worker never comes back to life', async () => {
    const { topic, cleanup } = await jobTopic('stop-in-start', { partitions: 2 });
    let runs = 0;
    const groups: string[] = [];
    const workers: Worker<Payment>[] = [];
    // stop() at several points of start(): connecting, checking topics, joining the group.
    for (const delayMs of [20, 100, 250, 400, 600, 900]) {
      const groupId = uniqueName('stop-in-start-g');
      groups.push(groupId);
      const w = worker(topic, groupId, {
        handler: async () => {
          runs++;
        },
      });
      workers.push(w);
      const started = w.start();
      await sleep(delayMs);
      await w.stop();
      await started.catch(() => undefined);
    }
    await enqueuePayments(topic, 20, 4);
    await sleep(3000);
    expect(runs).toBe(0);
    expect(workers.filter((w) => w.ready)).toHaveLength(0);
    const admin = createKafka(stack().connection).admin();
    await admin.connect();
    const described = await admin.describeGroups(groups);
    await admin.disconnect();
    expect(described.groups.flatMap((g) => g.members)).toHaveLength(0);
    await cleanup();
  });

  it('drains before rejoining even when kafkajs, not the intake, sees the rebalance: no job runs twice', async () => {
    const { topic, cleanup } = await jobTopic('drain', { partitions: 6 });
    const groupId = uniqueName('drain-g');
    await enqueuePayments(topic, 60, 60);
    const runs = new Map<string, number>();
    const handler = async (job: { id: string }) => {
      runs.set(job.id, (runs.get(job.id) ?? 0) + 1);
      await sleep(3000);
    };
    const opts = {
      concurrency: 100,
      heartbeatIntervalMs: 300,
      sessionTimeoutMs: 10_000,
      commitIntervalMs: 60_000,
      handler,
    };
    const a = worker(topic, groupId, opts);
    await a.start();
    // Every job is running; a's intake has nothing left, so only kafkajs' own heartbeat (after
    // its empty fetches) can see the rebalance that b's join starts.
    await waitUntil(() => runs.size === 60, { timeoutMs: 20_000, what: 'all 60 jobs running in a' });
    const b = worker(topic, groupId, opts);
    await b.start();
    await waitUntil(
      async () => [...(await committedOffsets(groupId, topic)).values()].reduce((s, n) => s + n, 0) === 60,
      {
        timeoutMs: 30_000,
        what: 'every offset committed',
      },
    );
    await sleep(1500);
    await Promise.all([a.stop(), b.stop()]);
    expect([...runs.values()].filter((n) => n > 1)).toEqual([]);
    expect(runs.size).toBe(60);
    await cleanup();
  });

  it('a handler that succeeds after jobTimeoutMs succeeded; one that ignores its signal gives its slot back (stuck)', async () => {
    const { topic, cleanup } = await jobTopic('stuck', { partitions: 1 });
    await enqueuePayments(topic, 2, 2); // acct-0 then acct-1
    const events: string[] = [];
    const started: Record<string, number> = {};
    const w = worker(topic, uniqueName('stuck-g'), {
      concurrency: 1,
      jobTimeoutMs: 300,
      retry: { tiers: [], inPlace: 2, maxAttempts: 3 },
      metrics: { port: 0, host: '127.0.0.1' },
      handler: async (job) => {
        started[job.key!] = Date.now();
        events.push(`start ${job.key} #${job.attempt}`);
        if (job.key === 'acct-0') await sleep(1500); // ignores ctx.signal
        events.push(`end ${job.key}`);
      },
    });
    const failed: string[] = [];
    w.on('job:failed', (job) => failed.push(job.key!));
    await w.start();
    await waitUntil(() => events.includes('end acct-1'), { timeoutMs: 15_000, what: 'the second job' });
    const metrics = await (await fetch(`http://127.0.0.1:${w.metricsPort}/metrics`)).text();
    expect(metrics).toMatch(/^queue_stuck_jobs\{[^}]*\} 1$/m);
    await waitUntil(() => events.includes('end acct-0'), { timeoutMs: 15_000, what: 'the stuck job' });
    await waitUntil(async () => (await committedOffsets(w.options.groupId, topic)).get(0) === 2, {
      what: 'both offsets committed',
    });
    await w.stop();
    // The second job got the slot after 2 x jobTimeoutMs, while the first still ran.
    expect(started['acct-1']! - started['acct-0']!).toBeGreaterThanOrEqual(550);
    expect(events.indexOf('start acct-1 #1')).toBeLessThan(events.indexOf('end acct-0'));
    // The late success counted: no failure, no second run.
    expect(failed).toEqual([]);
    expect(events.filter((e) => e.startsWith('start acct-0'))).toEqual(['start acct-0 #1']);
    await cleanup();
  });

  it('a transactional write leaves no lag of one behind: the commit point passes its commit marker', async () => {
    const { topic, cleanup } = await jobTopic('txn-marker', { partitions: 1 });
    const groupId = uniqueName('txn-marker-g');
    await enqueuePayments(topic, 5, 2);
    const kafka = createKafka(stack().connection);
    const producer = kafka.producer({
      transactionalId: uniqueName('txn'),
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await producer.connect();
    for (let batch = 0; batch < 2; batch++) {
      const tx = await producer.transaction();
      await tx.send({ topic, messages: [{ key: 'acct-0', value: Buffer.from(`not avro ${batch}`) }] });
      await tx.commit(); // a commit marker follows each record: offsets 5+6, 7+8
    }
    await producer.disconnect();
    let handled = 0;
    const dead: unknown[] = [];
    const w = worker(topic, groupId, {
      handler: async () => {
        handled++;
      },
    });
    w.on('job:dead', (item) => dead.push(item));
    await w.start();
    await waitUntil(() => handled === 5 && dead.length === 2, { what: '5 jobs done, 2 dead-lettered' });
    const admin = kafka.admin();
    await admin.connect();
    const [end] = await admin.fetchTopicOffsets(topic);
    await admin.disconnect();
    expect(Number(end!.high)).toBe(9);
    await waitUntil(async () => (await committedOffsets(groupId, topic)).get(0) === 9, {
      timeoutMs: 15_000,
      what: 'the commit at the log end (9), past the last marker',
    });
    await w.stop();
    await cleanup();
  });

  it('two groups on one topic sharing a Redis idempotency store each run every job (keys are scoped by group)', async ({
    skip,
  }) => {
    const { port } = needRedis({ skip });
    const { topic, cleanup } = await jobTopic('idem-scope', { partitions: 2 });
    const { jobIds } = await enqueuePayments(topic, 60, 6);
    const prefix = `strand-test:${uniqueName('scope')}:`;
    const ran = { a: new Set<string>(), b: new Set<string>() };
    const stores = [
      new RedisIdempotencyStore({ host: '127.0.0.1', port, keyPrefix: prefix }),
      new RedisIdempotencyStore({ host: '127.0.0.1', port, keyPrefix: prefix }),
    ];
    const duplicates = { a: 0, b: 0 };
    const workers = (['a', 'b'] as const).map((name, i) => {
      const w = worker(topic, uniqueName(`idem-scope-${name}`), {
        idempotency: { store: stores[i]! },
        handler: async (job) => {
          ran[name].add(job.id);
        },
      });
      w.on('job:duplicate', () => duplicates[name]++);
      return w;
    });
    for (const w of workers) await w.start();
    await waitUntil(() => ran.a.size === 60 && ran.b.size === 60, {
      timeoutMs: 30_000,
      what: 'both groups running every job',
    });
    await Promise.all(workers.map((w) => w.stop()));
    await Promise.all(stores.map((s) => s.close()));
    expect(duplicates).toEqual({ a: 0, b: 0 });
    expect([...ran.a].sort()).toEqual([...jobIds].sort());
    // The done markers are under each group's scope.
    await redis.connect().catch(() => undefined);
    const keys = await redis.keys(`${prefix}*`);
    expect(keys.filter((k) => k.includes(`${workers[0]!.options.groupId}/${topic}:`))).toHaveLength(60);
    expect(keys.filter((k) => k.includes(`${workers[1]!.options.groupId}/${topic}:`))).toHaveLength(60);
    await redis.del(...keys);
    await cleanup();
  });
});
