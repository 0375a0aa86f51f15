import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { createKafka } from '../../src/kafka/client.js';
import { createLogger } from '../../src/observability/logger.js';
import { JobProducer } from '../../src/producer/job-producer.js';
import { Worker } from '../../src/worker/worker.js';
import { runCli } from '../support/cli.js';
import { jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { enqueuePayments, type Payment, paymentSchema } from '../support/jobs.js';

/** Lag computed independently of Strand's lag code: end offset − committed (or − log start). */
async function adminLag(groupId: string, topic: string): Promise<Map<number, number>> {
  const admin = createKafka(stack().connection).admin();
  await admin.connect();
  const ends = await admin.fetchTopicOffsets(topic);
  const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
  await admin.disconnect();
  return new Map(
    ends.map((e) => {
      const c = Number(committed?.partitions.find((p) => p.partition === e.partition)?.offset ?? -1);
      return [e.partition, Number(e.high) - (c >= 0 ? c : Number(e.low))];
    }),
  );
}

function gauge(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)))
      return Number(line.split(' ').pop());
  }
  return undefined;
}

describe('metrics, health and lag', () => {
  it('/readyz answers 503 while the worker waits for its group join, 200 once it holds an assignment', async () => {
    const { topic, cleanup } = await jobTopic('ready', { partitions: 2 });
    const groupId = uniqueName('ready-g');
    await enqueuePayments(topic, 4, 4);
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const options = {
      brokers: stack().brokers,
      registry: { url: stack().registryUrl },
      topic,
      groupId,
      retry: { tiers: [] },
      status: false,
      logger: createLogger({ level: 'error' }),
    };
    let started = 0;
    // A holds jobs that wait for the gate: a rebalance waits for A's drain, so B's join cannot end.
    const a = new Worker<Payment>({
      ...options,
      handler: async () => {
        started++;
        await gate;
      },
    });
    await a.start();
    await waitUntil(() => started > 0, { timeoutMs: 20_000, what: 'a held job' });
    const b = new Worker<Payment>({
      ...options,
      metrics: { port: 0, host: '127.0.0.1' },
      handler: async () => undefined,
    });
    const bStarting = b.start();
    try {
      const url = await waitUntil(() => b.metricsPort && `http://127.0.0.1:${b.metricsPort}`, {
        intervalMs: 5,
        what: "B's metrics server",
      });
      const probes: number[] = [];
      for (let i = 0; i < 6; i++) {
        probes.push((await fetch(`${url}/readyz`)).status);
        await new Promise((r) => setTimeout(r, 250));
      }
      expect(probes).toEqual([503, 503, 503, 503, 503, 503]);
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
      release();
      await bStarting;
      await waitUntil(async () => (await fetch(`${url}/readyz`)).status === 200, {
        timeoutMs: 30_000,
        what: 'B ready after the join',
      });
    } finally {
      release();
      await Promise.all([a.stop(), b.stop()]);
      await cleanup();
    }
  });

  it('readiness, health during a long job, queue_depth_pending = independent lag, outcome counters = our tally', async () => {
    const { topic, cleanup } = await jobTopic('metrics', { partitions: 3, tierDelays: [300] });
    const groupId = uniqueName('metrics-g');
    // 200 jobs: #5 fails once (retried), #7 is poison (dead-lettered); then 3 duplicates of #1's id.
    const { jobIds } = await enqueuePayments(topic, 200, 40, {
      memo: (i) => (i === 5 ? 'fail-once' : i === 7 ? 'poison' : null),
    });
    const producer = new JobProducer<Payment>({
      brokers: stack().brokers,
      registry: { url: stack().registryUrl },
      topic,
      schema: paymentSchema,
      logger: createLogger({ level: 'error' }),
    });
    await producer.connect();
    for (let i = 0; i < 3; i++) {
      await producer.enqueue({
        key: 'acct-dup',
        data: {
          paymentId: 'dup',
          accountId: 'acct-dup',
          amountCents: 1,
          currency: 'EUR',
          sequence: 1,
          createdAt: Date.now(),
          memo: null,
        },
        jobId: jobIds[1]!,
      });
    }
    await producer.disconnect();

    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const tally = { completed: 0, retried: 0, dead_lettered: 0, duplicate: 0 };
    const worker = new Worker<Payment>({
      brokers: stack().brokers,
      registry: { url: stack().registryUrl },
      topic,
      groupId,
      concurrency: 8,
      retry: { inPlace: 0, tiers: [300], maxAttempts: 3 },
      idempotency: { store: 'memory' },
      metrics: { port: 0, host: '127.0.0.1' },
      lagIntervalMs: 300,
      logger: createLogger({ level: 'error' }),
      handler: async (job) => {
        await gate;
        if (job.data.memo === 'poison') throw new TypeError('amount is not a number');
        if (job.data.memo === 'fail-once' && job.attempt === 1) throw new Error('gateway timeout');
      },
    });
    worker.on('job:completed', () => void tally.completed++);
    worker.on('job:retried', () => void tally.retried++);
    worker.on('job:dead', () => void tally.dead_lettered++);
    worker.on('job:duplicate', () => void tally.duplicate++);

    const starting = worker.start();
    const url = await waitUntil(() => worker.metricsPort && `http://127.0.0.1:${worker.metricsPort}`, {
      intervalMs: 2,
      what: 'metrics server',
    });
    // (Not ready before the join: the next test holds a join open and checks it deterministically.)
    await starting;
    await waitUntil(async () => (await fetch(`${url}/readyz`)).status === 200, {
      timeoutMs: 30_000,
      what: 'ready after the join',
    });

    // Everything is held by the gate: nothing committed, so lag = every record.
    const expected = await adminLag(groupId, topic);
    expect([...expected.values()].reduce((a, b) => a + b, 0)).toBe(203);
    await waitUntil(
      async () => {
        const text = await (await fetch(`${url}/metrics`)).text();
        return [...expected].every(
          ([p, lag]) =>
            gauge(text, 'queue_depth_pending', { topic, partition: String(p), group: groupId }) === lag,
        );
      },
      { timeoutMs: 10_000, what: 'queue_depth_pending equal to the admin lag' },
    );
    const health = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
    expect(health.status).toBe(200);
    const held = await (await fetch(`${url}/metrics`)).text();
    expect(gauge(held, 'queue_inflight_jobs', { topic })).toBe(8);
    expect(gauge(held, 'queue_desired_replicas', { group: groupId })).toBe(1);

    release();
    await waitUntil(
      () => tally.completed + tally.dead_lettered + tally.duplicate >= 202 && tally.retried === 1,
      { timeoutMs: 30_000, what: 'all outcomes' },
    );
    await waitUntil(
      async () => {
        const text = await (await fetch(`${url}/metrics`)).text();
        return (
          gauge(text, 'queue_dlq_depth', { topic }) === 1 &&
          [...(await adminLag(groupId, topic)).values()].every((l) => l === 0)
        );
      },
      { timeoutMs: 15_000, what: 'lag drained and DLQ depth 1' },
    );
    const text = await (await fetch(`${url}/metrics`)).text();
    for (const [outcome, n] of Object.entries(tally)) {
      expect(gauge(text, 'queue_jobs_total', { topic, outcome }), outcome).toBe(n);
    }
    expect(tally).toEqual({ completed: 199, retried: 1, dead_lettered: 1, duplicate: 3 });
    expect(gauge(text, 'queue_retries_total', { topic, tier: '1' })).toBe(1);
    expect(gauge(text, 'queue_failures_total', { topic, error_class: 'TypeError' })).toBe(1);
    expect(gauge(text, 'queue_rebalances_total', { group: groupId })).toBeGreaterThanOrEqual(1);
    expect(text).toContain('queue_processing_latency_seconds_bucket');
    expect(text).toContain('process_resident_memory_bytes');
    await worker.stop();
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();

    // With no worker running: strand lag and strand exporter report the same lag as the admin client.
    await enqueuePayments(topic, 60, 12);
    const independent = await adminLag(groupId, topic);
    expect([...independent.values()].reduce((a, b) => a + b, 0)).toBe(60);
    const lag = await runCli(['lag', '--group', groupId, '--topic', topic, '--json']);
    expect(lag.code).toBe(0);
    const rows = JSON.parse(lag.stdout) as { partition: number; lag: number }[];
    expect(new Map(rows.map((r) => [r.partition, r.lag]))).toEqual(independent);
    const table = await runCli(['lag', '--group', groupId, '--topic', topic]);
    expect(table.stdout).toContain('total lag 60');

    const exporter = spawn(
      process.execPath,
      [
        'dist/cli/main.js',
        'exporter',
        '--group',
        groupId,
        '--topic',
        topic,
        '--port',
        '0',
        '--host',
        '127.0.0.1',
      ],
      {
        env: { ...process.env, STRAND_BROKERS: stack().brokers.join(',') },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    try {
      let out = '';
      exporter.stdout.on('data', (d) => (out += d));
      const exporterUrl = await waitUntil(() => /(http:\/\/\S+)\/metrics/.exec(out)?.[1], {
        timeoutMs: 20_000,
        what: 'exporter URL',
      });
      const exported = await (await fetch(`${exporterUrl}/metrics`)).text();
      for (const [p, l] of independent)
        expect(gauge(exported, 'queue_depth_pending', { topic, partition: String(p), group: groupId })).toBe(
          l,
        );
      expect(gauge(exported, 'queue_dlq_depth', { topic })).toBe(1);
      expect(gauge(exported, 'queue_desired_replicas', { group: groupId })).toBe(1);
    } finally {
      exporter.kill('SIGKILL');
    }
    await cleanup();
  });
});
