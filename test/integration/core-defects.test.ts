import { describe, expect, it } from 'vitest';
import { committedOffsets, jobTopic, uniqueName, waitUntil } from '../support/helpers.js';
import { enqueuePayments } from '../support/jobs.js';
import { paymentWorker as worker } from '../support/worker.js';

// One test per defect of the core that the review against a real broker proved (issue 25); each
// failed before its fix.

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
});
