import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKafka } from '../../src/kafka/client.js';
import { computeLag, totalLag } from '../../src/lag/lag.js';
import { createLogger } from '../../src/observability/logger.js';
import { JobProducer } from '../../src/producer/job-producer.js';
import { DEFAULT_DELAY_BUCKETS_MS, findDelayBuckets } from '../../src/topology/delays.js';
import type { Worker } from '../../src/worker/worker.js';
import { jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { type Payment, paymentSchema } from '../support/jobs.js';
import { WorkerFleet } from '../support/processes.js';
import { paymentWorker } from '../support/worker.js';

/**
 * Delayed jobs through the default delay buckets: 50 at 3 s, 50 at 8 s, 20 with runAt 5 s ahead,
 * 40 at 1 h and 20 immediate, interleaved over 4 partitions and 10 keys. Every due job starts no
 * earlier than its due time and soon after it, no 1 h job runs, and immediate jobs are not delayed.
 */
const HOUR = 3_600_000;

function payment(i: number): Payment {
  return {
    paymentId: `p${i}`,
    accountId: `a${i % 10}`,
    amountCents: 100 + i,
    currency: 'EUR',
    sequence: i,
    createdAt: Date.now(),
    memo: null,
  };
}

let topic: string;
let cleanup: () => Promise<void>;
let producer: JobProducer<Payment>;
beforeAll(async () => {
  ({ topic, cleanup } = await jobTopic('delayed', {
    partitions: 4,
    delayBucketsMs: [...DEFAULT_DELAY_BUCKETS_MS],
  }));
  producer = new JobProducer<Payment>({
    brokers: stack().brokers,
    registry: { url: stack().registryUrl },
    topic,
    schema: paymentSchema,
    logger: createLogger({ level: 'error' }),
  });
  await producer.connect();
});
afterAll(async () => {
  await producer?.disconnect();
  await cleanup?.();
});

describe('delayed jobs', () => {
  it('start within their window, never early; 1 h jobs wait; immediate jobs run at once', async () => {
    const starts = new Map<string, number>();
    const worker: Worker<Payment> = paymentWorker(topic, uniqueName('delayed-g'), {
      concurrency: 32,
      handler: async (job) => {
        if (!starts.has(job.id)) starts.set(job.id, Date.now());
      },
    });
    await worker.start();
    try {
      const kinds: { delay?: number | string; runAt?: Date; kind: string }[] = [];
      for (let i = 0; i < 50; i++) kinds.push({ delay: 3000, kind: '3s' });
      for (let i = 0; i < 50; i++) kinds.push({ delay: '8s', kind: '8s' });
      for (let i = 0; i < 20; i++) kinds.push({ kind: 'runAt' });
      for (let i = 0; i < 40; i++) kinds.push({ delay: HOUR, kind: '1h' });
      for (let i = 0; i < 20; i++) kinds.push({ kind: 'now' });
      // Interleaved: the order of enqueue mixes every kind.
      const order = kinds
        .map((k, i) => ({ k, sort: (i * 7919) % kinds.length }))
        .sort((a, b) => a.sort - b.sort);
      const due = new Map<string, { kind: string; dueAt: number; sentAt: number }>();
      for (let i = 0; i < order.length; i += 10) {
        const slice = order.slice(i, i + 10);
        const enqueuedAt = Date.now();
        const results = await producer.enqueueMany(
          slice.map(({ k }, j) => ({
            key: `a${(i + j) % 10}`,
            data: payment(i + j),
            ...(k.delay !== undefined ? { delay: k.delay } : {}),
            ...(k.kind === 'runAt' ? { runAt: new Date(enqueuedAt + 5000) } : {}),
          })),
        );
        const sentAt = Date.now();
        results.forEach((r, j) => {
          const kind = slice[j]!.k.kind;
          if (kind === 'now') expect(r.topic).toBe(topic);
          else expect(r.topic).toMatch(new RegExp(`^${topic}\\.delay\\.`));
          due.set(r.jobId, { kind, dueAt: r.dueAt ?? enqueuedAt, sentAt });
        });
      }
      const expected = [...due.values()].filter((d) => d.kind !== '1h').length;
      await waitUntil(() => starts.size >= expected, { timeoutMs: 30_000, what: `${expected} jobs started` });
      // A little longer: nothing else may start (the 1 h jobs).
      await new Promise((r) => setTimeout(r, 1500));

      const late: number[] = [];
      const byKind = new Map<string, number[]>();
      for (const [jobId, d] of due) {
        const started = starts.get(jobId);
        if (d.kind === '1h') {
          expect(started, `1 h job ${jobId} ran`).toBeUndefined();
          continue;
        }
        expect(started, `${d.kind} job ${jobId} never started`).toBeDefined();
        expect(started!, `${d.kind} job ${jobId} started before it was due`).toBeGreaterThanOrEqual(d.dueAt);
        // An immediate job's lateness counts from when its enqueue returned: the first enqueue also
        // registers the schema and fetches the topics' metadata, 2.3 s on a just-started stack (a
        // cold registry), which is the producer's time, not a delay of the job.
        const lateness = started! - (d.kind === 'now' ? d.sentAt : d.dueAt);
        late.push(lateness);
        byKind.set(d.kind, [...(byKind.get(d.kind) ?? []), lateness]);
        if (d.kind === 'now') expect(lateness, `immediate job ${jobId}`).toBeLessThan(3000);
      }
      late.sort((a, b) => a - b);
      const p = (q: number) => late[Math.min(late.length - 1, Math.floor(q * late.length))]!;
      console.info(
        `delayed jobs: ${late.length} started; lateness p50 ${p(0.5)} ms, p99 ${p(0.99)} ms, max ${late[late.length - 1]} ms; max by kind ${[...byKind].map(([k, v]) => `${k} ${Math.max(...v)}`).join(', ')}`,
      );
      // Each within its window: no earlier than due (above), at most 2.5 s after it even on a busy CI machine.
      expect(late[late.length - 1]).toBeLessThan(2500);

      // The 40 hour-long jobs are delayed, not lag: never due, so no replicas for them.
      const admin = createKafka(stack().connection).admin();
      await admin.connect();
      try {
        const buckets = findDelayBuckets(topic, await admin.listTopics()).map((b) => b.topic);
        const delayTopics = new Set(buckets);
        await waitUntil(
          async () => {
            const rows = await computeLag(admin, worker.options.groupId, [topic, ...buckets], {
              delayTopics,
            });
            const delayed = totalLag(rows.filter((r) => delayTopics.has(r.topic)));
            const jobs = rows.filter((r) => !delayTopics.has(r.topic));
            return delayed === 40 && totalLag(jobs) === 0 && totalLag(rows, 'due') === 0;
          },
          { timeoutMs: 15_000, what: 'lag 0, 40 delayed jobs, none due' },
        );
        await worker.refreshLag();
        const text = await worker.metrics.registry.getSingleMetricAsString('queue_delayed_jobs');
        expect(text).toMatch(new RegExp(`queue_delayed_jobs\\{topic="${topic}",group="[^"]+"\\} 40`));
      } finally {
        await admin.disconnect();
      }
    } finally {
      await worker.stop();
    }
  });

  it('a worker SIGKILLed while delayed jobs wait, then restarted: none lost, none early', async () => {
    const own = await jobTopic('delayed-kill', {
      partitions: 4,
      delayBucketsMs: [...DEFAULT_DELAY_BUCKETS_MS],
    });
    const killProducer = new JobProducer<Payment>({
      brokers: stack().brokers,
      registry: { url: stack().registryUrl },
      topic: own.topic,
      schema: paymentSchema,
      logger: createLogger({ level: 'error' }),
    });
    await killProducer.connect();
    const fleet = new WorkerFleet({
      topic: own.topic,
      groupId: uniqueName('delayed-kill-g'),
      concurrency: 16,
    });
    try {
      const first = fleet.start();
      // 120 jobs due 2 to 7 s from now, over 12 keys, in batches of 20.
      const due = new Map<string, number>();
      for (let b = 0; b < 6; b++) {
        const results = await killProducer.enqueueMany(
          Array.from({ length: 20 }, (_, j) => {
            const i = 1000 + b * 20 + j;
            return { key: `k${i % 12}`, data: payment(i), delay: 2000 + ((i * 37) % 5000) };
          }),
        );
        for (const r of results) due.set(r.jobId, r.dueAt!);
      }
      // Killed while most of them still wait in their buckets or in the worker's memory.
      await new Promise((r) => setTimeout(r, 3000));
      await fleet.kill(first, 'SIGKILL');
      const beforeKill = new Set(fleet.read().map((l) => l.jobId));
      expect(beforeKill.size).toBeLessThan(due.size);
      expect([...beforeKill].every((id) => due.has(id))).toBe(true);
      fleet.start();
      await waitUntil(() => [...due.keys()].every((id) => fleet.completedIds().has(id)), {
        timeoutMs: 60_000,
        intervalMs: 500,
        what: `all ${due.size} delayed jobs completed after the restart`,
      });
      for (const line of fleet.read().filter((l) => l.kind === 'S' && due.has(l.jobId)))
        expect(line.at, `job ${line.jobId} started before it was due`).toBeGreaterThanOrEqual(
          due.get(line.jobId)!,
        );
    } finally {
      await fleet.killAll();
      await killProducer.disconnect();
      await own.cleanup();
    }
  });

  it('delay buckets created while workers run: consumed without a restart, by every member; none early', async () => {
    const own = await jobTopic('delayed-late', { partitions: 4 });
    const groupId = uniqueName('delayed-late-g');
    const starts = new Map<string, number>();
    const handler = async (job: { id: string }) => {
      if (!starts.has(job.id)) starts.set(job.id, Date.now());
    };
    const logs: string[] = [];
    const logger = createLogger({
      level: 'info',
      destination: { write: (line: string) => void logs.push(line) },
    });
    // Started before the topic has buckets; it looks for new ones at every lag refresh (1 s here).
    const first = paymentWorker(own.topic, groupId, { handler, logger, lagIntervalMs: 1000 });
    let second: Worker<Payment> | undefined;
    let late: JobProducer<Payment> | undefined;
    const { createJobTopics } = await import('../../src/kafka/topics.js');
    const admin = createKafka(stack().connection).admin();
    await admin.connect();
    try {
      await first.start();
      const added = await createJobTopics(stack().connection, {
        topic: own.topic,
        partitions: 4,
        tierDelays: [],
        delayBucketsMs: [1000, 5000],
      });
      expect(added.filter((o) => o.role === 'delay').map((o) => o.status)).toEqual([
        'created',
        'created',
        'created',
      ]);
      // A second member subscribes to the buckets from its start; the group now mixes subscriptions
      // until the first worker found them too.
      second = paymentWorker(own.topic, groupId, { handler, lagIntervalMs: 1000 });
      await second.start();
      late = new JobProducer<Payment>({
        brokers: stack().brokers,
        registry: { url: stack().registryUrl },
        topic: own.topic,
        schema: paymentSchema,
        logger: createLogger({ level: 'error' }),
      });
      await late.connect();
      const due = new Map<string, number>();
      const results = await late.enqueueMany(
        Array.from({ length: 40 }, (_, i) => ({
          key: `k${i % 8}`,
          data: payment(2000 + i),
          delay: 3000 + (i % 4) * 1000,
        })),
      );
      for (const r of results) due.set(r.jobId, r.dueAt!);
      await waitUntil(() => [...due.keys()].every((id) => starts.has(id)), {
        timeoutMs: 60_000,
        intervalMs: 200,
        what: `all ${due.size} delayed jobs started`,
      });
      for (const [id, at] of due) {
        expect(starts.get(id)!, `job ${id} started before it was due`).toBeGreaterThanOrEqual(at);
        expect(starts.get(id)! - at, `job ${id} started late`).toBeLessThan(15_000);
      }
      expect(logs.some((l) => l.includes('delay buckets appeared; consuming them too'))).toBe(true);
    } finally {
      await late?.disconnect();
      await second?.stop();
      await first.stop();
      await admin.deleteTopics({
        topics: findDelayBuckets(own.topic, await admin.listTopics()).map((b) => b.topic),
      });
      await admin.disconnect();
      await own.cleanup();
    }
  });

  it('a paused worker still moves delayed jobs to the job topic on time; they start on resume', async () => {
    const own = await jobTopic('delayed-paused', { partitions: 2, delayBucketsMs: [1000] });
    const ownProducer = new JobProducer<Payment>({
      brokers: stack().brokers,
      registry: { url: stack().registryUrl },
      topic: own.topic,
      schema: paymentSchema,
      logger: createLogger({ level: 'error' }),
    });
    await ownProducer.connect();
    const starts = new Map<string, number>();
    const worker = paymentWorker(own.topic, uniqueName('delayed-paused-g'), {
      handler: async (job) => {
        if (!starts.has(job.id)) starts.set(job.id, Date.now());
      },
    });
    const admin = createKafka(stack().connection).admin();
    await admin.connect();
    const onJobTopic = async () =>
      (await admin.fetchTopicOffsets(own.topic)).reduce((sum, o) => sum + Number(o.high), 0);
    await worker.start();
    try {
      worker.pause();
      const results = await ownProducer.enqueueMany(
        Array.from({ length: 10 }, (_, i) => ({ key: `p${i}`, data: payment(3000 + i), delay: 2500 })),
      );
      const lastDue = Math.max(...results.map((r) => r.dueAt!));
      await waitUntil(async () => (await onJobTopic()) === 10, {
        timeoutMs: 15_000,
        intervalMs: 100,
        what: 'the 10 delayed jobs on the job topic while the worker is paused',
      });
      expect(Date.now() - lastDue, 'moved within 2 s of their due time').toBeLessThan(2000);
      await new Promise((r) => setTimeout(r, 1000));
      expect(results.filter((r) => starts.has(r.jobId))).toEqual([]);
      const resumedAt = Date.now();
      worker.resume();
      await waitUntil(() => results.every((r) => starts.has(r.jobId)), {
        timeoutMs: 15_000,
        intervalMs: 100,
        what: 'the delayed jobs started after resume',
      });
      for (const r of results) expect(starts.get(r.jobId)!).toBeGreaterThanOrEqual(resumedAt);
    } finally {
      await worker.stop();
      await ownProducer.disconnect();
      await admin.disconnect();
      await own.cleanup();
    }
  });

  it('refuses a delay beyond the topic’s retention, and a delayed job to a topic without buckets', async () => {
    await expect(producer.enqueue({ key: 'a', data: payment(1), delay: 30 * 24 * HOUR })).rejects.toThrow(
      /job\.delay: due in 30d, beyond the retention of topic .* \(7d\)/,
    );
    await expect(
      producer.enqueue({ key: 'a', data: payment(1), delay: '1m', runAt: Date.now() + 1000 }),
    ).rejects.toThrow(/job\.delay: give delay or runAt, not both/);
    const { topic: plain, cleanup: cleanPlain } = await jobTopic('delayed-plain', { partitions: 1 });
    const p = new JobProducer<Payment>({
      brokers: stack().brokers,
      registry: { url: stack().registryUrl },
      topic: plain,
      schema: paymentSchema,
      logger: createLogger({ level: 'error' }),
    });
    await p.connect();
    try {
      await expect(p.enqueue({ key: 'a', data: payment(1), delay: '10m' })).rejects.toThrow(
        `topic ${plain} has no delay buckets for delayed jobs; create them with "strand topics create ${plain} --delays"`,
      );
      // A past runAt or a negative delay runs now, on the job topic.
      const now = await p.enqueueMany([
        { key: 'a', data: payment(2), runAt: new Date(Date.now() - 60_000) },
        { key: 'a', data: payment(3), delay: -5000 },
      ]);
      expect(now.map((r) => r.topic)).toEqual([plain, plain]);
      expect(now.every((r) => r.dueAt === undefined)).toBe(true);
    } finally {
      await p.disconnect();
      await cleanPlain();
    }
  });
});
