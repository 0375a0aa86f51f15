import { spawn } from 'node:child_process';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/observability/logger.js';
import type { Job, WorkerOptions } from '../../src/worker/options.js';
import { Worker } from '../../src/worker/worker.js';
import { committedOffsets, jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { enqueuePayments, type Payment } from '../support/jobs.js';
import { needPostgres, pgEnv } from '../support/postgres.js';

const quiet = createLogger({ level: process.env.TEST_LOG ?? 'error' });
const workers: Worker<Payment>[] = [];
afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop({ timeoutMs: 1000 })));
});

function startWorker(topic: string, opts: Partial<WorkerOptions<Payment>>): Worker<Payment> {
  const w = new Worker<Payment>({
    brokers: stack().brokers,
    registry: { url: stack().registryUrl },
    topic,
    groupId: uniqueName(`${topic}-g`),
    logger: quiet,
    commitIntervalMs: 200,
    ...opts,
  });
  workers.push(w);
  return w;
}

/** One batch handler call as the handler saw it. */
interface Call {
  readonly id: number;
  readonly start: number;
  end: number;
  readonly jobs: readonly Job<Payment>[];
}

/**
 * Per key, consecutive jobs (by sequence) must not overlap: in one call they are in sequence
 * order in the array; across calls the later call starts after the earlier one ended.
 */
function orderViolations(calls: readonly Call[]): string[] {
  const runs = new Map<string, { seq: number; call: Call; index: number }[]>();
  for (const call of calls)
    call.jobs.forEach((job, index) => {
      const list = runs.get(job.data.accountId) ?? [];
      list.push({ seq: job.data.sequence, call, index });
      runs.set(job.data.accountId, list);
    });
  const out: string[] = [];
  for (const [key, list] of runs) {
    list.sort((a, b) => a.seq - b.seq);
    for (let i = 1; i < list.length; i++) {
      const a = list[i - 1]!;
      const b = list[i]!;
      if (a.call === b.call ? a.index > b.index : b.call.start < a.call.end)
        out.push(`${key}: #${b.seq} (call ${b.call.id}) overlaps or precedes #${a.seq} (call ${a.call.id})`);
    }
  }
  return out;
}

describe('batch handlers', () => {
  it.each([
    {
      shape: 'no tiers: several jobs of a key in a batch',
      tiers: [] as number[],
      maxWaitMs: 20,
      minMean: 20,
      overlap: true,
    },
    // Strict key order with tiers: one job per key in a batch, so a batch waits up to maxWaitMs for
    // heads of more keys (3.4 jobs per call before it did: it started on each key a batch freed).
    // It reaches the keys of the partitions in the buffer: 21.6 per call here while the first
    // fetched partitions filled it; the intake now takes all 6 at once and shares the buffer among
    // them (50 per call in test/unit/worker/strict-batch-size.test.ts, issue 31: at least 30).
    {
      shape: 'strict order with tiers: one job per key in a batch',
      tiers: [1000],
      maxWaitMs: 50,
      minMean: 30,
      // Each batch takes the heads of every runnable key, so the next finds none until it ends.
      overlap: false,
    },
  ])(
    '5,000 jobs over 50 keys in batches of up to 100 ($shape): each completed once, per-key order by overlap, no key in two calls at once',
    async ({ tiers, maxWaitMs, minMean, overlap }) => {
      const { topic, cleanup } = await jobTopic('batch-order', { partitions: 6, tierDelays: tiers });
      const total = 5000;
      await enqueuePayments(topic, total, 50);
      const calls: Call[] = [];
      const active = new Map<string, number>();
      const sharedKey: string[] = [];
      const completed = new Map<string, number>();
      const w = startWorker(topic, {
        concurrency: 8,
        retry: { tiers },
        batch: { maxSize: 100, maxWaitMs },
        batchHandler: async (jobs) => {
          const call: Call = {
            id: calls.length,
            start: performance.now(),
            end: Number.POSITIVE_INFINITY,
            jobs,
          };
          calls.push(call);
          const keys = new Set(jobs.map((j) => j.data.accountId));
          for (const key of keys) {
            if ((active.get(key) ?? 0) > 0) sharedKey.push(`call ${call.id}: ${key} is in a running call`);
            active.set(key, (active.get(key) ?? 0) + 1);
          }
          // A bulk write's worth of time, so calls overlap.
          await new Promise((r) => setTimeout(r, 2 + Math.random() * 8));
          for (const key of keys) active.set(key, active.get(key)! - 1);
          call.end = performance.now();
          for (const job of jobs) completed.set(job.id, (completed.get(job.id) ?? 0) + 1);
        },
      });
      await w.start();
      await waitUntil(() => completed.size === total, {
        timeoutMs: 120_000,
        what: `${total} jobs completed (${completed.size})`,
      });
      await waitUntil(
        async () =>
          [...(await committedOffsets(w.options.groupId, topic)).values()].reduce((a, b) => a + b, 0) ===
          total,
        { timeoutMs: 10_000, what: 'offsets committed to the end' },
      );
      await w.stop();
      const sizes = calls.map((c) => c.jobs.length);
      const mean = sizes.reduce((a, b) => a + b, 0) / sizes.length;
      const overlapping = calls.filter((c) =>
        calls.some((d) => d !== c && d.start < c.end && c.start < d.end),
      );
      console.info(
        `${calls.length} calls, mean batch ${mean.toFixed(1)}, largest ${Math.max(...sizes)}, ${overlapping.length} calls overlapped another`,
      );
      expect([...completed.values()].filter((n) => n !== 1)).toEqual([]);
      expect(sharedKey).toEqual([]);
      expect(orderViolations(calls)).toEqual([]);
      expect(Math.max(...sizes)).toBeLessThanOrEqual(100);
      expect(mean).toBeGreaterThanOrEqual(minMean);
      // Concurrency counts batches: several ran at once.
      if (overlap) expect(overlapping.length).toBeGreaterThan(0);
      const metrics = await w.metrics.registry.getSingleMetricAsString('queue_batch_size');
      expect(metrics).toMatch(new RegExp(`queue_batch_size_count\\{[^}]*\\} ${calls.length}\\b`));
      const jobsTotal = await w.metrics.registry.getSingleMetricAsString('queue_jobs_total');
      expect(jobsTotal).toMatch(new RegExp(`outcome="completed"\\} ${total}\\b`));
      await cleanup();
    },
    180_000,
  );

  it('items returned as failed go through a tier and complete; duplicates leave the batch before the call', async () => {
    const { topic, cleanup } = await jobTopic('batch-fail', { partitions: 3, tierDelays: [500] });
    const total = 600;
    const { jobIds } = await enqueuePayments(topic, total, 20);
    const completed = new Map<string, { attempt: number; topic: string }[]>();
    const failedOnce = new Set<string>();
    const seen: string[] = [];
    const w = startWorker(topic, {
      concurrency: 4,
      retry: { inPlace: 0, tiers: [500], maxAttempts: 3 },
      idempotency: { store: 'memory' },
      batch: { maxSize: 50, maxWaitMs: 10 },
      batchHandler: (jobs) => {
        const failed: { job: Job<Payment>; error: unknown }[] = [];
        for (const job of jobs) {
          seen.push(job.id);
          if (job.attempt === 1 && job.data.sequence % 7 === 0) {
            failedOnce.add(job.id);
            failed.push({ job, error: new Error(`downstream refused #${job.data.sequence}`) });
            continue;
          }
          const list = completed.get(job.id) ?? [];
          list.push({ attempt: job.attempt, topic: job.topic });
          completed.set(job.id, list);
        }
        return { failed };
      },
    });
    await w.start();
    await waitUntil(() => completed.size === total, {
      timeoutMs: 60_000,
      what: `completions (${completed.size})`,
    });
    // The same job ids again: the memory store knows them done, so no call sees them.
    const before = seen.length;
    const { JobProducer } = await import('../../src/producer/job-producer.js');
    const { paymentSchema } = await import('../support/jobs.js');
    const producer = new JobProducer<Payment>({
      brokers: stack().brokers,
      registry: { url: stack().registryUrl },
      topic,
      schema: paymentSchema,
      logger: quiet,
    });
    await producer.connect();
    const again = jobIds.slice(0, 30);
    await producer.enqueueMany(
      again.map((jobId, i) => ({
        key: `acct-${i % 20}`,
        jobId,
        data: {
          paymentId: `again-${i}`,
          accountId: `acct-${i % 20}`,
          amountCents: 1,
          currency: 'EUR' as const,
          sequence: 1000 + i,
          createdAt: Date.now(),
          memo: null,
        },
      })),
    );
    await producer.disconnect();
    const jobsTotal = async () => w.metrics.registry.getSingleMetricAsString('queue_jobs_total');
    await waitUntil(async () => /outcome="duplicate"\} 30\b/.test(await jobsTotal()), {
      timeoutMs: 20_000,
      what: '30 duplicates counted',
    });
    await w.stop();
    expect(seen.length).toBe(before);
    expect(failedOnce.size).toBe(Math.floor(total / 20 / 7) * 20);
    expect([...completed.values()].filter((l) => l.length !== 1)).toEqual([]);
    for (const id of failedOnce)
      expect(completed.get(id)).toEqual([{ attempt: 2, topic: `${topic}.retry.1` }]);
    const text = await jobsTotal();
    expect(text).toMatch(new RegExp(`outcome="retried"\\} ${failedOnce.size}\\b`));
    expect(text).toMatch(new RegExp(`outcome="completed"\\} ${total}\\b`));
    await cleanup();
  }, 120_000);

  it('PostgreSQL bulk insert (examples/batch-postgres.ts): every job lands exactly once after a worker SIGKILL', async ({
    skip,
  }) => {
    const postgres = needPostgres({ skip });
    // The example's retry tiers: 1 s and 10 s.
    const { topic, cleanup } = await jobTopic('batch-pg', { partitions: 4, tierDelays: [1000, 10_000] });
    const table = uniqueName('payments').replace('-', '_');
    const groupId = uniqueName(`${topic}-g`);
    const db = new pg.Client({ connectionString: postgres.url });
    await db.connect();
    const total = 20_000;
    await enqueuePayments(topic, total, 200);
    const rows = async () => Number((await db.query(`SELECT count(*) AS n FROM ${table}`)).rows[0].n);
    const spawnWorker = () =>
      spawn(process.execPath, ['dist/cli/main.js', 'worker', 'examples/batch-postgres.ts'], {
        env: {
          ...process.env,
          STRAND_BROKERS: stack().brokers.join(','),
          STRAND_REGISTRY_URL: stack().registryUrl,
          STRAND_LOG_LEVEL: 'error',
          PAYMENTS_TOPIC: topic,
          PAYMENTS_GROUP: groupId,
          PAYMENTS_TABLE: table,
          ...pgEnv(postgres),
        },
        stdio: ['ignore', 'ignore', 'inherit'],
      });
    const exited = (child: ReturnType<typeof spawn>) =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) resolve();
        else child.once('exit', () => resolve());
      });
    try {
      const first = spawnWorker();
      // The table is made by the worker; kill it a third of the way in, mid-stream.
      await waitUntil(async () => (await rows().catch(() => 0)) >= total / 3, {
        timeoutMs: 90_000,
        what: 'a third of the rows',
      });
      first.kill('SIGKILL');
      await exited(first);
      const landed = await rows();
      const committed = [...(await committedOffsets(groupId, topic)).values()].reduce(
        (a, b) => a + Math.max(0, b),
        0,
      );
      console.info(`killed with ${landed} rows in the table and ${committed} offsets committed`);
      // Rows beyond the committed offsets: jobs the next worker is handed again.
      expect(landed).toBeGreaterThan(committed);
      const second = spawnWorker();
      await waitUntil(async () => (await rows()) >= total, { timeoutMs: 90_000, what: `${total} rows` });
      await waitUntil(
        async () =>
          [...(await committedOffsets(groupId, topic)).values()].reduce((a, b) => a + b, 0) === total,
        { timeoutMs: 20_000, what: 'offsets committed to the end' },
      );
      second.kill('SIGTERM');
      await exited(second);
      const { rows: check } = await db.query(
        `SELECT count(*)::int AS n, count(DISTINCT job_id)::int AS ids, count(DISTINCT (account_id, sequence))::int AS payments FROM ${table}`,
      );
      expect(check[0]).toEqual({ n: total, ids: total, payments: total });
    } finally {
      await db.query(`DROP TABLE IF EXISTS ${table}`).catch(() => undefined);
      await db.end();
      await cleanup();
    }
  }, 240_000);
});
