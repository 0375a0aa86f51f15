import { Writable } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { RetryLaterError } from '../../src/failure/errors.js';
import { HEADERS, headerString } from '../../src/headers.js';
import { createLogger } from '../../src/observability/logger.js';
import { jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { enqueuePayments } from '../support/jobs.js';
import { rawConsume, rawProduce } from '../support/raw-kafka.js';
import { paymentWorker } from '../support/worker.js';

/**
 * A `RetryLaterError` asking for longer than the last retry tier (docs/guarantees.md, "Retry
 * later"): it must not sit at the head of a tier partition, which is paused until its head is due,
 * holding every due retry behind it; and no delay may reach Node's timers above 2^31 − 1 ms, where
 * they fire after 1 ms (a pause/resume loop).
 */

/** Node's limit for a timer delay. */
const NODE_TIMER_MAX = 2 ** 31 - 1;

afterEach(() => {
  vi.restoreAllMocks();
});

interface Run {
  topic: string;
  at: number;
}

describe('retry-later delays longer than the last tier', () => {
  it('wait in the delay buckets, not at the head of the last tier: a due retry behind runs on time, the long one from its tier when due, never early', async () => {
    const tiers = [300, 1000];
    const { topic, cleanup } = await jobTopic('rl-long', {
      partitions: 1,
      tierDelays: tiers,
      delayBucketsMs: [1000, 5000],
    });
    const groupId = uniqueName('rl-long-g');
    const later: Run[] = [];
    const flaky: Run[] = [];
    const worker = paymentWorker(topic, groupId, {
      retry: { tiers, inPlace: 0, maxAttempts: 5 },
      handler: async (job) => {
        const run = { topic: job.topic, at: Date.now() };
        if (job.data.memo === 'later') {
          later.push(run);
          if (later.length === 1) throw new RetryLaterError({ delayMs: 6000 });
        } else {
          // Fails twice: tier 1, then the last tier (behind the long one), then completes.
          flaky.push(run);
          if (flaky.length < 3) throw new Error('flaky downstream');
        }
      },
    });
    // Key acct-0 asks to come back in 6 s; acct-1 fails into tier 1 and then tier 2.
    await enqueuePayments(topic, 2, 2, { memo: (i) => (i === 0 ? 'later' : 'flaky') });
    try {
      await worker.start();
      await waitUntil(() => flaky.length === 3 && later.length === 2, {
        timeoutMs: 30_000,
        what: 'both jobs done',
      });
      const asked = later[0]!.at;
      const lastTier = `${topic}.retry.2`;
      console.info(
        `retry-later 6 s (last tier 1 s): the due retry behind it ran ${flaky[2]!.at - asked} ms after the ask, ` +
          `the long one ${later[1]!.at - asked} ms after`,
      );
      // The flaky job's last-tier retry ran when due, not after the 6 s retry ahead of it in that tier.
      expect(flaky[2]!.topic).toBe(lastTier);
      expect(flaky[2]!.at - asked).toBeLessThan(5000);
      expect(flaky[2]!.at).toBeLessThan(later[1]!.at);
      // The long one ran again from its tier, not before its 6 s.
      expect(later[1]!.topic).toBe(lastTier);
      expect(later[1]!.at - asked).toBeGreaterThanOrEqual(6000);
      // It waited in the 5 s bucket, which knew where to send it.
      const [inBucket] = await rawConsume(stack().brokers, `${topic}.delay.5s`, 1);
      expect(headerString(inBucket?.headers, HEADERS.retryTier)).toBe('2');
    } finally {
      await worker.stop();
      await cleanup();
    }
  });

  it('without delay buckets: the last tier with the longest tier delay (a warning says so), not the full hour', async () => {
    const tiers = [300, 1000];
    const { topic, cleanup } = await jobTopic('rl-cap', { partitions: 1, tierDelays: tiers });
    const lines: string[] = [];
    const logger = createLogger({
      level: 'warn',
      destination: new Writable({
        write(chunk, _enc, done) {
          lines.push(String(chunk));
          done();
        },
      }),
    });
    const runs: Run[] = [];
    const worker = paymentWorker(topic, uniqueName('rl-cap-g'), {
      retry: { tiers, inPlace: 0 },
      logger,
      handler: async (job) => {
        runs.push({ topic: job.topic, at: Date.now() });
        if (runs.length === 1) throw new RetryLaterError({ delayMs: 3_600_000 });
      },
    });
    await enqueuePayments(topic, 1, 1);
    try {
      await worker.start();
      await waitUntil(() => runs.length === 2, {
        timeoutMs: 20_000,
        what: 'the job again after the last tier’s delay',
      });
      expect(runs[1]!.topic).toBe(`${topic}.retry.2`);
      expect(runs[1]!.at - runs[0]!.at).toBeGreaterThanOrEqual(1000);
      const warning = lines
        .map((l) => JSON.parse(l) as { msg: string; requestedMs?: number })
        .find((l) => l.requestedMs);
      expect(warning?.msg).toContain(`strand topics create ${topic} --delays`);
      expect(warning?.requestedMs).toBe(3_600_000);
    } finally {
      await worker.stop();
      await cleanup();
    }
  });

  it('a delay past 2^31 − 1 ms, and a tier record due that far ahead, arm no Node timer that long: no pause/resume loop, other jobs run', async () => {
    const tiers = [300];
    const { topic, cleanup } = await jobTopic('rl-huge', {
      partitions: 1,
      tierDelays: tiers,
      delayBucketsMs: [1000, 86_400_000],
    });
    // A tier record due in 25 days, as a Strand before this check wrote it for a RetryLaterError that
    // long: the same job bytes as a real job, with a due time past Node's limit.
    await enqueuePayments(topic, 1, 1, { memo: () => 'old-tier-record' });
    const [job] = await rawConsume(stack().brokers, topic, 1);
    const farAhead = String(Date.now() + NODE_TIMER_MAX + 60_000);
    await rawProduce(stack().brokers, `${topic}.retry.1`, [
      {
        key: job!.key,
        value: job!.value,
        headers: { [HEADERS.jobId]: uniqueName('old'), [HEADERS.attempt]: '2', [HEADERS.dueAt]: farAhead },
      },
    ]);
    const overflowWarnings: Error[] = [];
    const onWarning = (w: Error) => {
      if (w.name === 'TimeoutOverflowWarning') overflowWarnings.push(w);
    };
    process.on('warning', onWarning);
    const long: number[] = [];
    const real = globalThis.setTimeout;
    vi.spyOn(globalThis, 'setTimeout').mockImplementation(((
      fn: () => void,
      ms?: number,
      ...rest: unknown[]
    ) => {
      if ((ms ?? 0) > NODE_TIMER_MAX) long.push(ms!);
      return Reflect.apply(real, globalThis, [fn, ms, ...rest]);
    }) as typeof setTimeout);
    const runs: { memo: string | null; topic: string }[] = [];
    const worker = paymentWorker(topic, uniqueName('rl-huge-g'), {
      // Relaxed: every job here has key acct-0, and in strict order the ordinary one would (rightly)
      // wait behind the huge ask.
      retry: { tiers, inPlace: 0, ordering: 'relaxed' },
      handler: async (j) => {
        runs.push({ memo: j.data.memo, topic: j.topic });
        if (j.data.memo === 'huge' && j.attempt === 1 && !j.headers[HEADERS.retryLater])
          throw new RetryLaterError({ delayMs: NODE_TIMER_MAX + 60_000 });
      },
    });
    try {
      await worker.start();
      await enqueuePayments(topic, 1, 1, { memo: () => 'huge' });
      await waitUntil(() => runs.some((r) => r.memo === 'huge'), { timeoutMs: 20_000, what: 'the huge ask' });
      // Three seconds with both far-off records pending, and an ordinary job meanwhile.
      await new Promise((r) => real(r, 1500));
      await enqueuePayments(topic, 1, 1, { memo: () => 'ordinary' });
      await waitUntil(() => runs.some((r) => r.memo === 'ordinary'), {
        timeoutMs: 20_000,
        what: 'an ordinary job',
      });
      await new Promise((r) => real(r, 1500));
      console.info(
        `25-day retry-later + a tier record due in 25 days, 3 s: ${long.length} Node timers over 2^31 − 1 ms, ${overflowWarnings.length} TimeoutOverflowWarnings`,
      );
      expect(long).toEqual([]);
      expect(overflowWarnings).toEqual([]);
      // Neither far-off job ran again; the huge ask waits in the 1 d bucket.
      expect(runs.map((r) => r.memo).sort()).toEqual(['huge', 'ordinary', 'old-tier-record'].sort());
      expect(runs.find((r) => r.memo === 'old-tier-record')?.topic).toBe(topic);
      const [bucketed] = await rawConsume(stack().brokers, `${topic}.delay.1d`, 1);
      expect(headerString(bucketed?.headers, HEADERS.retryTier)).toBe('1');
    } finally {
      process.off('warning', onWarning);
      await worker.stop();
      await cleanup();
    }
  });
});
