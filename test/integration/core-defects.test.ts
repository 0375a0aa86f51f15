import { describe, expect, it } from 'vitest';
import { paymentProducer } from '../../chaos/payments.js';
import { HEADERS } from '../../src/headers.js';
import { createKafka } from '../../src/kafka/client.js';
import { committedOffsets, jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { enqueuePayments } from '../support/jobs.js';
import { rawConsume } from '../support/raw-kafka.js';
import { paymentWorker as worker } from '../support/worker.js';

// One test per defect of the core that the review against a real broker proved (issue 25); each
// failed before its fix.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function logEnd(topic: string, partition = 0): Promise<number> {
  const admin = createKafka(stack().connection).admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    return Number(offsets.find((o) => o.partition === partition)?.high ?? -1);
  } finally {
    await admin.disconnect();
  }
}

describe('core defects (issue 25)', () => {
  it('a drain longer than the session timeout keeps the member in the group: the job runs once, never on two members at once', async () => {
    const { topic, cleanup } = await jobTopic('long-drain', { partitions: 1 });
    const groupId = uniqueName('long-drain-g');
    await enqueuePayments(topic, 1, 1);
    const runs: { member: string; start: number; end?: number }[] = [];
    const opts = (member: string) => ({
      sessionTimeoutMs: 10_000,
      heartbeatIntervalMs: 1000,
      rebalanceTimeoutMs: 40_000,
      jobTimeoutMs: 60_000,
      commitIntervalMs: 60_000,
      handler: async () => {
        const run: { member: string; start: number; end?: number } = { member, start: Date.now() };
        runs.push(run);
        await sleep(20_000);
        run.end = Date.now();
      },
    });
    const a = worker(topic, groupId, opts('a'));
    await a.start();
    await waitUntil(() => runs.length === 1, { timeoutMs: 20_000, what: 'the job running in a' });
    // b's join starts a rebalance; a drains for ~20 s (twice the session timeout) before rejoining.
    const b = worker(topic, groupId, opts('b'));
    await b.start();
    await waitUntil(async () => (await committedOffsets(groupId, topic)).get(0) === 1, {
      timeoutMs: 60_000,
      what: 'the job committed',
    });
    // Long enough for a second run to show up if a's commit was refused and b took the job.
    await sleep(3000);
    await Promise.all([a.stop(), b.stop()]);
    expect(runs.map((r) => r.member)).toEqual(['a']);
    await cleanup();
  }, 90_000);

  it('user code outside the handler that throws never leaves a job without an outcome (strict order: the job is not lost)', async () => {
    const { topic, cleanup } = await jobTopic('user-faults', { partitions: 1, tierDelays: [200] });
    const groupId = uniqueName('user-faults-g');
    // acct-0: seq 1..3 (seq 1 fails once, classify throws on it); acct-1: seq 1..3 (its job 2
    // has an idempotency key function that throws); acct-2: handler throws non-Errors.
    await enqueuePayments(topic, 9, 3);
    const ran: string[] = [];
    const failedOnce = new Set<string>();
    const w = worker(topic, groupId, {
      retry: { tiers: [200], inPlace: 0, maxAttempts: 3, ordering: 'strict' },
      idempotency: {
        store: 'memory',
        key: (job) => {
          if (job.key === 'acct-1' && job.data.sequence === 2) throw new Error('key function bug');
          return job.id;
        },
      },
      classify: (error) => {
        if ((error as Error).message === 'fails once') throw new Error('classify bug');
        return undefined;
      },
      handler: async (job) => {
        const name = `${job.key}#${job.data.sequence}`;
        if (job.key === 'acct-0' && job.data.sequence === 1 && !failedOnce.has(name)) {
          failedOnce.add(name);
          throw new Error('fails once');
        }
        if (job.key === 'acct-2' && job.data.sequence === 1 && !failedOnce.has(name)) {
          failedOnce.add(name);
          throw null;
        }
        if (job.key === 'acct-2' && job.data.sequence === 2 && !failedOnce.has(name)) {
          failedOnce.add(name);
          throw Object.defineProperty({}, 'message', {
            get() {
              throw new Error('getter bomb');
            },
          });
        }
        ran.push(name);
      },
    });
    let listenerCalls = 0;
    w.on('job:started', () => {
      listenerCalls++;
      throw new Error('listener bug');
    });
    w.on('job:failed', () => {
      throw 'a listener throwing a string';
    });
    const dead: string[] = [];
    w.on('job:dead', (item) => dead.push(item.jobId));
    await w.start();
    await waitUntil(() => ran.length === 8 && dead.length === 1, {
      timeoutMs: 60_000,
      what: 'eight jobs run and one dead-lettered',
    });
    // Release records (strict order) follow the jobs in the job topic: committed to its end.
    await waitUntil(async () => (await committedOffsets(groupId, topic)).get(0) === (await logEnd(topic)), {
      timeoutMs: 30_000,
      what: 'every offset committed',
    });
    await w.stop();
    // Every job ran except acct-1's second (its idempotency key cannot be computed: DLQ, with why).
    expect(ran.sort()).toEqual(
      ['acct-0#1', 'acct-0#2', 'acct-0#3', 'acct-1#1', 'acct-1#3', 'acct-2#1', 'acct-2#2', 'acct-2#3'].sort(),
    );
    expect(listenerCalls).toBeGreaterThanOrEqual(9);
    // Strict order held for acct-0: its first job (retried through the tier) ran before the others.
    expect(ran.filter((r) => r.startsWith('acct-0'))).toEqual(['acct-0#1', 'acct-0#2', 'acct-0#3']);
    expect(ran.filter((r) => r.startsWith('acct-2'))).toEqual(['acct-2#1', 'acct-2#2', 'acct-2#3']);
    const [record] = await rawConsume(stack().brokers, `${topic}.dlq`, 1);
    expect(record!.headers[HEADERS.errorClass]).toBe('IdempotencyKeyError');
    expect(String(record!.headers[HEADERS.errorMessage])).toMatch(/key function bug/);
    expect(dead).toHaveLength(1);
    await cleanup();
  }, 90_000);

  it('a long release does not pin its partition: other keys commit past it while the parked jobs run; a pause stops the release too', async () => {
    const { topic, cleanup } = await jobTopic('long-release', { partitions: 1, tierDelays: [300] });
    const groupId = uniqueName('long-release-g');
    const producer = await paymentProducer(stack(), topic);
    const job = (key: string, seq: number) => ({
      key,
      jobId: `${key}-${seq}`,
      data: {
        paymentId: `${key}-${seq}`,
        accountId: key,
        amountCents: 100,
        currency: 'EUR' as const,
        sequence: seq,
        createdAt: Date.now(),
        memo: null,
      },
    });
    // hot-0 fails once; hot-1..400 are parked behind it and released one by one (15 ms each).
    await producer.enqueueMany(Array.from({ length: 401 }, (_, i) => job('hot', i)));
    const hotRuns: { seq: number; start: number }[] = [];
    let failed = false;
    let paused = false;
    const startsWhilePaused: number[] = [];
    const w = worker(topic, groupId, {
      retry: { tiers: [300], inPlace: 0, maxAttempts: 3, ordering: 'strict' },
      concurrency: 8,
      handler: async (j) => {
        if (paused) startsWhilePaused.push(j.data.sequence);
        if (j.key !== 'hot') return;
        hotRuns.push({ seq: j.data.sequence, start: Date.now() });
        if (j.data.sequence === 0 && !failed) {
          failed = true;
          throw new Error('downstream down');
        }
        await sleep(15);
      },
    });
    await w.start();
    await waitUntil(() => hotRuns.length >= 20, { timeoutMs: 30_000, what: 'the release under way' });
    // Other keys' jobs enqueued now land after the release record: they must commit meanwhile.
    await producer.enqueueMany(Array.from({ length: 200 }, (_, i) => job(`other-${i % 20}`, i)));
    const end = await logEnd(topic);
    await waitUntil(async () => ((await committedOffsets(groupId, topic)).get(0) ?? 0) >= end, {
      timeoutMs: 20_000,
      what: 'the commit past the release record and the other keys',
    });
    const releasedWhenCommitted = hotRuns.length;
    expect(releasedWhenCommitted).toBeLessThan(402);
    // Paused: the release starts no further parked job until resumed.
    w.pause();
    paused = true;
    await sleep(500);
    const runsWhenPaused = hotRuns.length;
    await sleep(1000);
    expect(hotRuns.length).toBe(runsWhenPaused);
    paused = false;
    w.resume();
    await waitUntil(() => hotRuns.length === 402, { timeoutMs: 30_000, what: 'every hot job run' });
    await w.stop();
    await producer.disconnect();
    expect(startsWhilePaused).toEqual([]);
    // Strict order: hot-0 (its retry) then hot-1..400, one at a time.
    expect(hotRuns.slice(1).map((r) => r.seq)).toEqual(Array.from({ length: 401 }, (_, i) => i));
    await cleanup();
  }, 120_000);
});
