import { afterAll, describe, expect, it } from 'vitest';
import { paymentProducer } from '../../chaos/payments.js';
import { NonRetriableError } from '../../src/failure/errors.js';
import { HEADERS } from '../../src/headers.js';
import { createKafka } from '../../src/kafka/client.js';
import { createLogger } from '../../src/observability/logger.js';
import type { WorkerOptions } from '../../src/worker/options.js';
import { Worker } from '../../src/worker/worker.js';
import { runCli } from '../support/cli.js';
import { jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import type { Payment } from '../support/jobs.js';
import { rawConsume } from '../support/raw-kafka.js';

const quiet = createLogger({ level: process.env.TEST_LOG ?? 'error' });
const workers: Worker<Payment>[] = [];
afterAll(async () => {
  await Promise.all(workers.map((w) => w.stop({ timeoutMs: 1000 })));
});

/** One handler run: which job, when it started and ended, and whether it succeeded. */
interface Run {
  key: string;
  seq: number;
  attempt: number;
  start: number;
  end: number;
  ok: boolean;
}

const HOT = 'hot';
const OTHER_KEYS = 20;
const PER_OTHER_KEY = 5;

/** Key `hot` jobs 0–9 and 20 other keys × `perOtherKey`, interleaved; job ids `<key>-<seq>`. */
async function enqueueCase(topic: string, perOtherKey = PER_OTHER_KEY): Promise<void> {
  const producer = await paymentProducer(stack(), topic);
  const jobs: { key: string; jobId: string; data: Payment }[] = [];
  const job = (key: string, seq: number) => ({
    key,
    jobId: `${key}-${seq}`,
    data: {
      paymentId: `${key}-${seq}`,
      accountId: key,
      amountCents: 100 + seq,
      currency: 'EUR' as const,
      sequence: seq,
      createdAt: Date.now(),
      memo: null,
    },
  });
  for (let seq = 0; seq < Math.max(10, perOtherKey); seq++) {
    if (seq < 10) jobs.push(job(HOT, seq));
    for (let k = 0; k < OTHER_KEYS; k++) if (seq < perOtherKey) jobs.push(job(`acct-${k}`, seq));
  }
  await producer.enqueueMany(jobs);
  await producer.disconnect();
}

function startWorker(
  topic: string,
  groupId: string,
  runs: Run[],
  opts: Partial<WorkerOptions<Payment>>,
  handlerMs = 20,
) {
  const w = new Worker<Payment>({
    brokers: stack().brokers,
    registry: { url: stack().registryUrl },
    topic,
    groupId,
    logger: quiet,
    commitIntervalMs: 200,
    concurrency: 16,
    handler: async (job) => {
      const run: Run = {
        key: job.key!,
        seq: job.data.sequence,
        attempt: job.attempt,
        start: Date.now(),
        end: 0,
        ok: false,
      };
      runs.push(run);
      await new Promise((r) => setTimeout(r, handlerMs));
      run.end = Date.now();
      if (job.key === HOT && job.data.sequence === 3 && job.attempt <= 2) {
        if (job.attempt === 2 && opts.retry?.onDeadKey === 'dead-letter')
          throw new NonRetriableError('account closed');
        throw new Error(`downstream down (attempt ${job.attempt})`);
      }
      run.ok = true;
    },
    ...opts,
    retry: { inPlace: 0, tiers: [1000, 2000], maxAttempts: 5, ordering: 'strict', ...opts.retry },
  });
  workers.push(w);
  return w;
}

/** Successful runs of key `hot` never overlap, and run 0–9 in order. */
function expectHotInOrder(runs: Run[]): Run[] {
  const hot = runs.filter((r) => r.key === HOT && r.ok).sort((a, b) => a.start - b.start);
  expect(hot.map((r) => r.seq)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  for (let i = 1; i < hot.length; i++) expect(hot[i]!.start).toBeGreaterThanOrEqual(hot[i - 1]!.end);
  return hot;
}

describe("retry.ordering: 'strict'", () => {
  it('parks key hot behind its failed job 3: hot runs 0–9 in order, other keys finish first', async () => {
    const { topic, cleanup } = await jobTopic('strict', { partitions: 3, tierDelays: [1000, 2000] });
    await enqueueCase(topic);
    const runs: Run[] = [];
    const parked: string[] = [];
    let parkedJobsSeen = 0;
    const w = startWorker(topic, uniqueName('strict-g'), runs, {});
    w.on('job:parked', (item, head) => parked.push(`${item.jobId}<${head}`));
    await w.start();
    await waitUntil(
      async () => {
        const text = await w.metrics.registry.getSingleMetricAsString('queue_parked_jobs');
        const m = /queue_parked_jobs\{[^}]*\} (\d+)/.exec(text);
        parkedJobsSeen = Math.max(parkedJobsSeen, Number(m?.[1] ?? 0));
        return runs.filter((r) => r.ok).length === 10 + OTHER_KEYS * PER_OTHER_KEY;
      },
      { timeoutMs: 60_000, what: 'every job to complete' },
    );
    await w.stop();
    await cleanup();

    const hot = expectHotInOrder(runs);
    const three = hot[3]!;
    // Nothing of hot after job 3 started before job 3 completed (its failed attempts included).
    const laterHot = runs.filter((r) => r.key === HOT && r.seq > 3);
    expect(laterHot.every((r) => r.start >= three.end)).toBe(true);
    expect(runs.filter((r) => r.key === HOT && r.seq === 3).map((r) => r.attempt)).toEqual([1, 2, 3]);
    // Other keys flowed while hot waited: all of them finished before job 3 completed.
    const others = runs.filter((r) => r.key !== HOT);
    expect(Math.max(...others.map((r) => r.end))).toBeLessThan(three.start);
    // 4–9 were parked behind job 3, and the gauge saw them.
    expect(parked.sort()).toEqual([4, 5, 6, 7, 8, 9].map((s) => `hot-${s}<hot-3`));
    expect(parkedJobsSeen).toBe(6);
  });

  it('under a backlog, the worker that ends the head (co-partitioned: it owns the key) releases it at once', async () => {
    const { topic, cleanup } = await jobTopic('strict-backlog', { partitions: 3, tierDelays: [1000, 2000] });
    // 20 other keys × 400 jobs of 15 ms each, one at a time per key: about 6 s of backlog.
    await enqueueCase(topic, 400);
    const runs: Run[] = [];
    // The whole backlog fits the buffer: the intake never waits for room, so the retry tier's
    // record is fetched on time (a job-topic batch waiting for room holds one of the partitions
    // kafkajs consumes at once, and can hold the tier back).
    const w = startWorker(topic, uniqueName('strict-backlog-g'), runs, { maxBufferedJobs: 20_000 }, 15);
    await w.start();
    await waitUntil(() => runs.filter((r) => r.ok).length === 10 + OTHER_KEYS * 400, {
      timeoutMs: 90_000,
      what: 'every job to complete',
    });
    await w.stop();
    await cleanup();
    const hot = expectHotInOrder(runs);
    const othersEnd = Math.max(...runs.filter((r) => r.key !== HOT).map((r) => r.end));
    // Released when job 3 completed (about 3 s in), not when the intake reached its release record
    // behind the backlog: hot 4–9 ran while other keys still had jobs left.
    expect(hot[9]!.end).toBeLessThan(othersEnd);
    expect(hot[4]!.start - hot[3]!.end).toBeLessThan(1000);
  });

  it("the same case with 'relaxed': later jobs of hot pass job 3 while it waits in its tiers", async () => {
    const { topic, cleanup } = await jobTopic('relaxed', { partitions: 3, tierDelays: [1000, 2000] });
    await enqueueCase(topic);
    const runs: Run[] = [];
    const w = startWorker(topic, uniqueName('relaxed-g'), runs, { retry: { ordering: 'relaxed' } });
    await w.start();
    await waitUntil(() => runs.filter((r) => r.ok).length === 10 + OTHER_KEYS * PER_OTHER_KEY, {
      timeoutMs: 60_000,
      what: 'every job to complete',
    });
    await w.stop();
    await cleanup();
    const hot = runs.filter((r) => r.key === HOT && r.ok).sort((a, b) => a.end - b.end);
    expect(hot.map((r) => r.seq)).toEqual([0, 1, 2, 4, 5, 6, 7, 8, 9, 3]);
  });

  it("onDeadKey 'dead-letter': job 3 dies in its tier, jobs 4–9 go to the DLQ as key-dead, caused by it", async () => {
    const { topic, cleanup } = await jobTopic('strict-dead', { partitions: 3, tierDelays: [1000, 2000] });
    await enqueueCase(topic);
    const runs: Run[] = [];
    const w = startWorker(topic, uniqueName('strict-dead-g'), runs, {
      retry: { onDeadKey: 'dead-letter' },
    });
    const dead: string[] = [];
    w.on('job:dead', (item) => dead.push(item.jobId));
    await w.start();
    await waitUntil(() => dead.length === 7, { timeoutMs: 60_000, what: 'job 3 and 4–9 dead-lettered' });
    await waitUntil(() => runs.filter((r) => r.ok).length === 3 + OTHER_KEYS * PER_OTHER_KEY, {
      timeoutMs: 30_000,
      what: 'the other keys to complete',
    });
    await w.stop();
    expect(runs.filter((r) => r.key === HOT && r.seq > 3)).toEqual([]);
    const letters = await rawConsume(stack().brokers, `${topic}.dlq`, 7, { timeoutMs: 20_000 });
    const byId = new Map(letters.map((m) => [m.headers[HEADERS.jobId], m.headers]));
    expect(byId.get('hot-3')?.[HEADERS.deadReason]).toBe('non-retriable');
    for (const seq of [4, 5, 6, 7, 8, 9]) {
      expect(byId.get(`hot-${seq}`)?.[HEADERS.deadReason]).toBe('key-dead');
      expect(byId.get(`hot-${seq}`)?.[HEADERS.deadCause]).toBe('hot-3');
      expect(byId.get(`hot-${seq}`)?.[HEADERS.errorClass]).toBe('KeyDeadError');
    }
    // The DLQ keeps their order (one key, one partition).
    expect(letters.filter((m) => m.key === HOT).map((m) => m.headers[HEADERS.jobId])).toEqual(
      [3, 4, 5, 6, 7, 8, 9].map((s) => `hot-${s}`),
    );
    const list = await runCli(['dlq', 'list', topic, '--json']);
    expect(list.code).toBe(0);
    const listed = JSON.parse(list.stdout) as { jobId: string; reason?: string; cause?: string }[];
    const keyDead = listed.filter((l) => l.reason === 'key-dead');
    expect(keyDead.map((l) => l.jobId).sort()).toEqual([4, 5, 6, 7, 8, 9].map((s) => `hot-${s}`));
    expect(keyDead.every((l) => l.cause === 'hot-3')).toBe(true);
    const table = await runCli(['dlq', 'list', topic]);
    expect(table.stdout).toMatch(/hot-4 .*key-dead.*hot-3/);
    await cleanup();
  });

  it('a parked key stays parked across a restart: the next worker runs hot 4–9 only after job 3', async () => {
    const { topic, cleanup } = await jobTopic('strict-restart', { partitions: 3, tierDelays: [6000] });
    await enqueueCase(topic);
    const groupId = uniqueName('strict-restart-g');
    const runs: Run[] = [];
    const first = startWorker(topic, groupId, runs, { retry: { tiers: [6000], maxAttempts: 5 } });
    const parked: string[] = [];
    first.on('job:parked', (item) => parked.push(item.jobId));
    await first.start();
    await waitUntil(() => parked.length === 6, { timeoutMs: 30_000, what: 'hot 4–9 parked' });
    await first.stop();
    expect(runs.some((r) => r.key === HOT && r.seq > 3)).toBe(false);
    const second = startWorker(topic, groupId, runs, { retry: { tiers: [6000], maxAttempts: 5 } });
    await second.start();
    await waitUntil(() => runs.filter((r) => r.key === HOT && r.ok).length === 10, {
      timeoutMs: 60_000,
      what: 'hot to finish on the second worker',
    });
    await second.stop();
    await cleanup();
    expectHotInOrder(runs);
    const three = runs.find((r) => r.key === HOT && r.seq === 3 && r.ok)!;
    expect(runs.filter((r) => r.key === HOT && r.seq > 3).every((r) => r.start >= three.end)).toBe(true);
  });

  it('a job topic that grew past its parking topic is refused at start with what to do', async () => {
    const { topic, cleanup } = await jobTopic('strict-grown', { partitions: 2, tierDelays: [1000] });
    const admin = createKafka(stack().connection).admin();
    await admin.connect();
    await admin.createPartitions({ topicPartitions: [{ topic, count: 4 }] });
    // The broker's metadata follows the controller shortly after (slower on a loaded machine).
    await waitUntil(
      async () => (await admin.fetchTopicMetadata({ topics: [topic] })).topics[0]?.partitions.length === 4,
      { what: 'the metadata showing 4 partitions' },
    );
    await admin.disconnect();
    const w = startWorker(topic, uniqueName('strict-grown-g'), [], { retry: { tiers: [1000] } });
    await expect(w.start()).rejects.toThrow(
      `${topic}.parked has 2 partitions and ${topic} 4: give it as many (kafka-topics.sh --alter --partitions 4), or set retry.ordering: 'relaxed'`,
    );
    await cleanup();
  });
});
