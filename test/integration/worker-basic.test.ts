import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/observability/logger.js';
import { Worker } from '../../src/worker/worker.js';
import { committedOffsets, jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { enqueuePayments, type Payment } from '../support/jobs.js';

describe('Worker (in process)', () => {
  it('runs every job once, keeps per-key order, and commits to the end', async () => {
    const { topic, cleanup } = await jobTopic('wbasic', { partitions: 6 });
    const groupId = uniqueName('wbasic-g');
    const { jobIds } = await enqueuePayments(topic, 3000, 50);
    const seen = new Map<string, number>();
    const lastSeq = new Map<string, number>();
    const violations: string[] = [];
    const active = new Set<string>();
    const worker = new Worker<Payment>({
      brokers: stack().brokers,
      registry: { url: stack().registryUrl },
      topic,
      groupId,
      concurrency: 32,
      retry: { tiers: [] },
      logger: createLogger({ level: 'warn' }),
      handler: async (job) => {
        const k = job.data.accountId;
        if (active.has(k)) violations.push(`concurrent ${k}`);
        active.add(k);
        if ((lastSeq.get(k) ?? 0) + 1 !== job.data.sequence)
          violations.push(`${k}: ${lastSeq.get(k)} -> ${job.data.sequence}`);
        lastSeq.set(k, job.data.sequence);
        await new Promise((r) => setTimeout(r, Math.random() * 3));
        seen.set(job.id, (seen.get(job.id) ?? 0) + 1);
        active.delete(k);
      },
    });
    await worker.start();
    await waitUntil(() => seen.size >= jobIds.length, { timeoutMs: 60_000, what: 'all jobs' });
    await waitUntil(
      async () => {
        const c = await committedOffsets(groupId, topic);
        return [...c.values()].reduce((a, b) => a + b, 0) === jobIds.length;
      },
      { timeoutMs: 10_000, what: 'commits to the end' },
    );
    await worker.stop();
    await cleanup();
    expect(violations).toEqual([]);
    expect([...seen.values()].every((n) => n === 1)).toBe(true);
    expect(new Set(seen.keys())).toEqual(new Set(jobIds));
  });
});
