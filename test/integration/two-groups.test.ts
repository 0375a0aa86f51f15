import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/observability/logger.js';
import { JobProducer } from '../../src/producer/job-producer.js';
import type { Worker } from '../../src/worker/worker.js';
import { jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { type Payment, paymentSchema } from '../support/jobs.js';
import { paymentWorker } from '../support/worker.js';

/**
 * Two consumer groups on one job topic share its retry tiers and delay buckets (the topics are the
 * job topic's): each group runs each job once — its own retries only, its own copy of each delayed
 * job — never the other group's.
 */
describe('two consumer groups on one job topic', () => {
  it('each runs every job once: its own retries, its own copy of each delayed job', async () => {
    const { topic, cleanup } = await jobTopic('two-groups', {
      partitions: 2,
      tierDelays: [500],
      delayBucketsMs: [1000],
    });
    const producer = new JobProducer<Payment>({
      brokers: stack().brokers,
      registry: { url: stack().registryUrl },
      topic,
      schema: paymentSchema,
      logger: createLogger({ level: 'error' }),
    });
    await producer.connect();
    const starts = new Map<string, string[]>();
    const completions = new Map<string, string[]>();
    const workers: Worker<Payment>[] = [];
    try {
      const groups = [uniqueName('two-groups-a'), uniqueName('two-groups-b')];
      for (const group of groups) {
        const w = paymentWorker(topic, group, {
          retry: { inPlace: 0, tiers: [500], maxAttempts: 3 },
          handler: async (job) => {
            starts.set(job.id, [...(starts.get(job.id) ?? []), `${group}#${job.attempt}`]);
            // Every fifth job fails its first attempt in each group: one retry through the tier each.
            if (job.data.sequence % 5 === 0 && job.attempt === 1) throw new Error('first attempt fails');
            completions.set(job.id, [...(completions.get(job.id) ?? []), group]);
          },
        });
        await w.start();
        workers.push(w);
      }
      const jobs = Array.from({ length: 30 }, (_, i) => ({
        key: `acct-${i % 6}`,
        data: {
          paymentId: `p${i}`,
          accountId: `acct-${i % 6}`,
          amountCents: 100,
          currency: 'EUR' as const,
          sequence: i,
          createdAt: Date.now(),
          memo: null,
        },
        // A third of them delayed by 1.5 s (through the 1 s bucket and the worker's memory).
        ...(i % 3 === 0 ? { delay: 1500 } : {}),
      }));
      const results = await producer.enqueueMany(jobs);
      await waitUntil(() => results.every((r) => (completions.get(r.jobId)?.length ?? 0) >= 2), {
        timeoutMs: 30_000,
        intervalMs: 200,
        what: 'every job completed in both groups',
      });
      // Late copies (a group running the other's retry or copy) would arrive within this wait.
      await new Promise((r) => setTimeout(r, 3000));
      for (const [i, r] of results.entries()) {
        expect([...(completions.get(r.jobId) ?? [])].sort(), `job ${i} completed once per group`).toEqual(
          [...groups].sort(),
        );
        const expected = groups.flatMap((g) => (i % 5 === 0 ? [`${g}#1`, `${g}#2`] : [`${g}#1`]));
        expect([...(starts.get(r.jobId) ?? [])].sort(), `job ${i}: its attempts per group`).toEqual(
          expected.sort(),
        );
      }
    } finally {
      for (const w of workers) await w.stop();
      await producer.disconnect();
      await cleanup();
    }
  });
});
