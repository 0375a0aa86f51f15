import { afterAll, describe, expect, it } from 'vitest';
import { NonRetriableError, RetryLaterError } from '../../src/failure/errors.js';
import { createLogger } from '../../src/observability/logger.js';
import { JobProducer } from '../../src/producer/job-producer.js';
import type { WorkerOptions } from '../../src/worker/options.js';
import { Worker } from '../../src/worker/worker.js';
import { runCli } from '../support/cli.js';
import { deleteReplayGroups } from '../support/dead-jobs.js';
import { jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { enqueuePayments, type Payment, paymentSchema } from '../support/jobs.js';
import { TcpProxy } from '../support/proxy.js';
import { rawConsume, rawProduce } from '../support/raw-kafka.js';

const quiet = createLogger({ level: process.env.TEST_LOG ?? 'error' });
const workers: Worker<Payment>[] = [];
afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop({ timeoutMs: 1000 })));
});

function startWorker(
  topic: string,
  opts: Partial<WorkerOptions<Payment>> & Pick<WorkerOptions<Payment>, 'handler'>,
) {
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

describe('failure routing', () => {
  it('a job failing twice then succeeding completes through the tiers with attempt 3, on time', async () => {
    const { topic, cleanup } = await jobTopic('fail-twice', { partitions: 2, tierDelays: [1000, 2000] });
    await enqueuePayments(topic, 1, 1);
    const starts: { attempt: number; at: number; header: string | undefined; topic: string }[] = [];
    const fails: number[] = [];
    const w = startWorker(topic, {
      retry: { inPlace: 0, tiers: [1000, 2000], maxAttempts: 5 },
      handler: async (job) => {
        starts.push({
          attempt: job.attempt,
          at: Date.now(),
          header: job.headers['strand-attempt'],
          topic: job.topic,
        });
        if (job.attempt <= 2) {
          fails.push(Date.now());
          throw new Error(`flaky downstream (attempt ${job.attempt})`);
        }
      },
    });
    await w.start();
    await waitUntil(() => starts.length === 3, { timeoutMs: 30_000, what: 'three attempts' });
    await w.stop();
    expect(starts.map((s) => s.attempt)).toEqual([1, 2, 3]);
    expect(starts[2]!.header).toBe('3');
    expect(starts.map((s) => s.topic)).toEqual([topic, `${topic}.retry.1`, `${topic}.retry.2`]);
    const wait1 = starts[1]!.at - fails[0]!;
    const wait2 = starts[2]!.at - fails[1]!;
    console.info(`tier waits: ${wait1} ms (tier 1 = 1000 ms), ${wait2} ms (tier 2 = 2000 ms)`);
    expect(wait1).toBeGreaterThanOrEqual(750);
    expect(wait1).toBeLessThanOrEqual(1250);
    expect(wait2).toBeGreaterThanOrEqual(1500);
    expect(wait2).toBeLessThanOrEqual(2500);
    await cleanup();
  });

  it('a job that always fails reaches the DLQ after maxAttempts with every header; other keys keep flowing', async () => {
    const { topic, cleanup } = await jobTopic('fail-always', { partitions: 1, tierDelays: [300, 300] });
    // Payment #0 (acct-0, first) always fails; 59 other jobs of 6 keys share its partition.
    const { jobIds } = await enqueuePayments(topic, 60, 6, { memo: (i) => (i === 0 ? 'fail-always' : null) });
    const completedAt = new Map<string, number>();
    const w = startWorker(topic, {
      retry: {
        inPlace: 1,
        inPlaceBackoff: { baseMs: 50, maxMs: 50, jitter: 0 },
        tiers: [300, 300],
        maxAttempts: 4,
      },
      handler: async (job) => {
        if (job.data.memo === 'fail-always') throw new Error('card declined by issuer');
        completedAt.set(job.id, Date.now());
      },
    });
    let deadAt = 0;
    w.on('job:dead', () => {
      deadAt = Date.now();
    });
    await w.start();
    await waitUntil(() => deadAt > 0, { timeoutMs: 30_000, what: 'the DLQ write' });
    await waitUntil(() => completedAt.size === 59, { timeoutMs: 30_000, what: 'the other jobs' });
    await w.stop();
    const [dead] = await rawConsume(stack().brokers, `${topic}.dlq`, 1);
    const h = dead!.headers;
    expect(h['strand-job-id']).toBe(jobIds[0]);
    expect(Number(h['strand-enqueued-at'])).toBeGreaterThan(0);
    expect(h['strand-attempt']).toBe('4');
    expect(h['strand-origin-topic']).toBe(topic);
    expect(h['strand-origin-partition']).toBe('0');
    expect(h['strand-origin-offset']).toBe('0');
    expect(h['strand-error-class']).toBe('Error');
    expect(h['strand-error-message']).toBe('card declined by issuer');
    expect(h['strand-error-stack']).toContain('card declined by issuer');
    expect(Number(h['strand-failed-at'])).toBeGreaterThan(0);
    expect(h['strand-group']).toBe(w.options.groupId);
    expect(dead!.key).toBe('acct-0');
    // acct-0's later jobs wait behind the failing one only until it leaves for a tier; other keys never wait.
    const otherKeys = jobIds.filter((_, i) => i % 6 !== 0);
    expect(otherKeys.every((id) => (completedAt.get(id) ?? Number.POSITIVE_INFINITY) < deadAt)).toBe(true);
    await cleanup();
  });

  it('poison records written by a raw client land in the DLQ byte for byte with a reason; the worker goes on', async () => {
    const { topic, cleanup } = await jobTopic('poison', { partitions: 1, tierDelays: [500] });
    await enqueuePayments(topic, 5, 5);
    const schemaId = (await (
      await fetch(`${stack().registryUrl}/subjects/${topic}-value/versions/latest`)
    ).json()) as { id: number };
    const good = (await rawConsume(stack().brokers, topic, 1))[0]!.value!;
    const poison: { name: string; value: Buffer; reason: string }[] = [
      { name: 'garbage', value: Buffer.from('{"not":"avro"}'), reason: 'bad-magic' },
      { name: 'magic 1', value: Buffer.concat([Buffer.from([1]), good.subarray(1)]), reason: 'bad-magic' },
      {
        name: 'unknown id',
        value: Buffer.concat([Buffer.from([0, 0x7f, 0xff, 0xff, 0xf0]), good.subarray(5)]),
        reason: 'unknown-schema-id',
      },
      { name: 'truncated', value: good.subarray(0, 12), reason: 'truncated' },
      { name: 'null value', value: Buffer.alloc(0), reason: 'truncated' },
      {
        name: 'trailing bytes',
        value: Buffer.concat([good, Buffer.from([1, 2, 3])]),
        reason: 'schema-mismatch',
      },
    ];
    expect(good.readUInt32BE(1)).toBe(schemaId.id);
    await rawProduce(
      stack().brokers,
      topic,
      poison.map((p) => ({ key: `poison-${p.name}`, value: p.value })),
    );
    await enqueuePayments(topic, 5, 5);
    let completed = 0;
    const w = startWorker(topic, { retry: { tiers: [500] }, handler: async () => void completed++ });
    await w.start();
    await waitUntil(() => completed === 10, { timeoutMs: 30_000, what: 'the valid jobs around the poison' });
    const dead = await waitUntil(
      async () => {
        const records = await rawConsume(stack().brokers, `${topic}.dlq`, poison.length);
        return records.length === poison.length ? records : undefined;
      },
      { timeoutMs: 20_000, what: 'every poison record in the DLQ' },
    );
    await w.stop();
    expect(dead).toHaveLength(poison.length);
    for (const p of poison) {
      const d = dead.find((x) => x.key === `poison-${p.name}`);
      expect(d, p.name).toBeDefined();
      expect(d!.value ?? Buffer.alloc(0), p.name).toEqual(p.value);
      expect(d!.headers['strand-error-class'], p.name).toBe('DecodeError');
      expect(d!.headers['strand-decode-reason'], p.name).toBe(p.reason);
      expect(d!.headers['strand-error-message'], p.name).toMatch(new RegExp(`^${p.reason}: `));
    }
    await cleanup();
  });

  it('registry unreachable: records with a never-seen schema id wait (no DLQ) without blocking known ones, and complete after it is back', async () => {
    const { topic, cleanup } = await jobTopic('reg-outage', { partitions: 2, tierDelays: [500] });
    const url = new URL(stack().registryUrl);
    const proxy = new TcpProxy(url.hostname, Number(url.port));
    const port = await proxy.start();
    let completed = 0;
    let known = 0;
    const w = startWorker(topic, {
      registry: { url: `http://127.0.0.1:${port}${url.pathname}`, timeoutMs: 500 },
      retry: { tiers: [500] },
      // Fewer slots than waiting jobs: a waiting job must not hold one.
      concurrency: 2,
      handler: async (job) => {
        if ('channel' in job.data) completed++;
        else known++;
      },
    });
    await w.start();
    await enqueuePayments(topic, 5, 5);
    await waitUntil(() => known === 5, { what: 'jobs with the known schema before the outage' });
    await proxy.cut();
    // A schema the worker has never seen, registered straight with the real registry.
    const v2 = {
      ...(paymentSchema as object),
      fields: [
        ...(paymentSchema as { fields: object[] }).fields,
        { name: 'channel', type: 'string', default: 'web' },
      ],
    };
    const producer = new JobProducer({
      brokers: stack().brokers,
      registry: { url: stack().registryUrl },
      topic,
      schema: v2,
      logger: quiet,
    });
    await producer.connect();
    await producer.enqueueMany(
      Array.from({ length: 20 }, (_, i) => ({
        key: `k${i % 4}`,
        data: {
          paymentId: `p${i}`,
          accountId: `k${i % 4}`,
          amountCents: i,
          currency: 'CHF',
          sequence: i,
          createdAt: Date.now(),
          memo: null,
          channel: 'app',
        },
      })),
    );
    await producer.disconnect();
    await enqueuePayments(topic, 10, 5);
    await waitUntil(() => known === 15, {
      timeoutMs: 15_000,
      what: 'known-schema jobs completing while unknown ones wait for the registry',
    });
    await new Promise((r) => setTimeout(r, 2000));
    expect(completed).toBe(0);
    await proxy.restore();
    await waitUntil(() => completed === 20, {
      timeoutMs: 60_000,
      what: 'completion after the registry is back',
    });
    await w.stop();
    const admin = (await import('../../src/kafka/client.js')).createKafka(stack().connection).admin();
    await admin.connect();
    const dlqEnd = (await admin.fetchTopicOffsets(`${topic}.dlq`)).reduce((s, o) => s + Number(o.high), 0);
    await admin.disconnect();
    expect(dlqEnd).toBe(0);
    await proxy.cut();
    await cleanup();
  });

  it('dlq list and replay: after the fix, replayed jobs complete; a second replay sends nothing; --dry-run sends nothing', async () => {
    const { topic, cleanup } = await jobTopic('replay', { partitions: 3, tierDelays: [300] });
    await enqueuePayments(topic, 30, 10, { memo: (i) => (i % 10 === 3 ? 'poison' : null) });
    let fixed = false;
    const completed = new Map<string, number>();
    const w = startWorker(topic, {
      retry: { tiers: [300] },
      handler: async (job) => {
        if (job.data.memo === 'poison' && !fixed) throw new NonRetriableError('merchant account closed');
        completed.set(job.id, (completed.get(job.id) ?? 0) + 1);
      },
    });
    let dead = 0;
    w.on('job:dead', () => void dead++);
    await w.start();
    await waitUntil(() => completed.size === 27 && dead === 3, {
      timeoutMs: 30_000,
      what: '27 done, 3 dead',
    });

    const list = await runCli(['dlq', 'list', topic, '--json']);
    expect(list.code).toBe(0);
    const listed = JSON.parse(list.stdout) as {
      errorClass: string;
      errorMessage: string;
      attempts: number;
    }[];
    expect(listed).toHaveLength(3);
    expect(
      listed.every(
        (j) =>
          j.errorClass === 'NonRetriableError' &&
          j.errorMessage === 'merchant account closed' &&
          j.attempts === 1,
      ),
    ).toBe(true);
    const table = await runCli(['dlq', 'list', topic]);
    expect(table.stdout).toMatch(/NonRetriableError\s+non-retriable\s+-\s+merchant account closed/);

    const dry = await runCli(['dlq', 'replay', topic, '--dry-run', '--json']);
    expect(dry.code).toBe(0);
    expect(JSON.parse(dry.stdout)).toMatchObject({ matched: 3, sent: 0, dryRun: true });
    await new Promise((r) => setTimeout(r, 1500));
    expect(completed.size).toBe(27);

    fixed = true;
    const replay = await runCli(['dlq', 'replay', topic, '--error', 'NonRetriableError', '--json']);
    expect(replay.code).toBe(0);
    expect(JSON.parse(replay.stdout)).toMatchObject({ matched: 3, sent: 3 });
    await waitUntil(() => completed.size === 30, { timeoutMs: 30_000, what: 'replayed jobs completing' });
    const again = await runCli(['dlq', 'replay', topic, '--error', 'NonRetriableError', '--json']);
    expect(JSON.parse(again.stdout)).toMatchObject({ sent: 0 });
    await new Promise((r) => setTimeout(r, 1500));
    await w.stop();
    expect([...completed.values()].every((n) => n === 1)).toBe(true);
    await cleanup();
  });

  it('a job dead-lettered as retry-later-exhausted, replayed, may ask to run later again', async () => {
    const { topic, cleanup } = await jobTopic('replay-later', { partitions: 1, tierDelays: [300] });
    await enqueuePayments(topic, 1, 1);
    const runs: { replayed: boolean; at: number }[] = [];
    const dead: string[] = [];
    const w = startWorker(topic, {
      retry: { tiers: [300], maxRetryLater: 2 },
      handler: async (job) => {
        const replayed = job.headers['strand-replay-count'] !== undefined;
        runs.push({ replayed, at: Date.now() });
        // Before the replay: always later (two hops, then the DLQ). After: later once, then done.
        if (!replayed || runs.filter((r) => r.replayed).length === 1)
          throw new RetryLaterError({ delayMs: 0, message: 'the bank is closed' });
      },
    });
    w.on('job:dead', (e) => void dead.push(e.jobId));
    let completed = 0;
    w.on('job:completed', () => void completed++);
    await w.start();
    await waitUntil(() => dead.length === 1, { timeoutMs: 30_000, what: 'the job dead-lettered' });
    const reasons = async () =>
      (JSON.parse((await runCli(['dlq', 'list', topic, '--json'])).stdout) as { reason: string }[]).map(
        (j) => j.reason,
      );
    expect(await reasons()).toEqual(['retry-later-exhausted']);
    const replay = await runCli(['dlq', 'replay', topic, '--json']);
    expect(JSON.parse(replay.stdout)).toMatchObject({ sent: 1 });
    await waitUntil(() => completed === 1 || dead.length > 1, {
      timeoutMs: 30_000,
      what: 'the replayed job to complete (or die again)',
    });
    await w.stop();
    // Its first run after the replay asked for later: a hop through the tier, not the DLQ.
    expect(dead).toHaveLength(1);
    expect(await reasons()).toEqual(['retry-later-exhausted']);
    expect(runs.filter((r) => r.replayed)).toHaveLength(2);
    expect(completed).toBe(1);
    await deleteReplayGroups(topic);
    await cleanup();
  });
});
