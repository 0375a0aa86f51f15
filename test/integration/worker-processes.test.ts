import { afterEach, describe, expect, it } from 'vitest';
import { rssMiB, watchCommits } from '../../chaos/fleet.js';
import { PaymentFeed } from '../../chaos/payments.js';
import { committedOffsets, jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { enqueuePayments } from '../support/jobs.js';
import { orderViolations, WorkerFleet } from '../support/processes.js';

let fleet: WorkerFleet | undefined;
afterEach(async () => {
  await fleet?.killAll();
  fleet = undefined;
});

describe('worker processes against the real broker', () => {
  it('two workers: 20,000 jobs over 300 keys each complete once, in per-key order', async () => {
    const { topic, cleanup } = await jobTopic('wproc-order', { partitions: 6 });
    const groupId = uniqueName('wproc-order-g');
    const { jobIds } = await enqueuePayments(topic, 20_000, 300);
    fleet = new WorkerFleet({ topic, groupId, concurrency: 64, minMs: 0, maxMs: 5 });
    fleet.start();
    fleet.start();
    await waitUntil(() => fleet!.completedIds().size >= jobIds.length, {
      timeoutMs: 180_000,
      intervalMs: 500,
      what: '20,000 completions',
    });
    const lines = fleet.read();
    const completions = lines.filter((l) => l.kind === 'C');
    expect(new Set(completions.map((l) => l.jobId))).toEqual(new Set(jobIds));
    expect(completions).toHaveLength(jobIds.length); // no duplicates without crashes
    expect(new Set(completions.map((l) => l.pid)).size).toBe(2); // both workers took part
    expect(orderViolations(lines)).toEqual([]);
    await cleanup();
  });

  it('SIGKILL mid-run, then a new worker: nothing is lost, order holds', async () => {
    const { topic, cleanup } = await jobTopic('wproc-kill', { partitions: 6 });
    const groupId = uniqueName('wproc-kill-g');
    const { jobIds } = await enqueuePayments(topic, 6000, 100);
    fleet = new WorkerFleet({ topic, groupId, concurrency: 32, minMs: 1, maxMs: 4 });
    const first = fleet.start();
    await waitUntil(() => fleet!.completedIds().size > 1500, {
      timeoutMs: 60_000,
      what: 'progress before the kill',
    });
    await fleet.kill(first, 'SIGKILL');
    const atKill = fleet.completedIds().size;
    expect(atKill).toBeLessThan(jobIds.length);
    fleet.start();
    await waitUntil(() => fleet!.completedIds().size >= jobIds.length, {
      timeoutMs: 120_000,
      intervalMs: 500,
      what: 'all jobs after restart',
    });
    expect(new Set(fleet.completedIds())).toEqual(new Set(jobIds));
    expect(orderViolations(fleet.read())).toEqual([]);
    await cleanup();
  });

  it('scaling 1 → 3 → 1 loses nothing, keeps key order, and never moves a commit backwards', async () => {
    const { topic, cleanup } = await jobTopic('wproc-scale', { partitions: 6 });
    const groupId = uniqueName('wproc-scale-g');
    const feed = await PaymentFeed.open(stack(), topic, 200);
    await feed.enqueue(8000);
    fleet = new WorkerFleet({ topic, groupId, concurrency: 8, minMs: 4, maxMs: 12 });
    const watch = await watchCommits(stack(), groupId, topic);
    fleet.start();
    await waitUntil(() => fleet!.completedIds().size > 1000, {
      timeoutMs: 60_000,
      what: 'first worker progress',
    });
    const second = fleet.start();
    const third = fleet.start();
    const pidsDone = () =>
      new Set(
        fleet!
          .read()
          .filter((l) => l.kind === 'C')
          .map((l) => l.pid),
      ).size;
    // One worker drains partitions a few at a time, so the backlog alone may leave a late joiner's
    // partitions empty: keep every partition receiving jobs until all three have completed some.
    await feed.feedWhile(() => pidsDone() === 3, { perTick: 60, tickMs: 100, maxMs: 60_000 });
    await feed.close();
    const jobIds = feed.jobIds;
    expect(pidsDone()).toBe(3);
    expect(fleet.completedIds().size).toBeLessThan(jobIds.length - 1000);
    // Scale down gracefully (SIGTERM: finish, commit, leave) and by crash.
    await fleet.kill(second, 'SIGTERM');
    await fleet.kill(third, 'SIGKILL');
    await waitUntil(() => fleet!.completedIds().size >= jobIds.length, {
      timeoutMs: 120_000,
      intervalMs: 500,
      what: 'all jobs',
    });
    await waitUntil(
      async () => {
        const c = await committedOffsets(groupId, topic);
        return [...c.values()].reduce((a, b) => a + b, 0) === jobIds.length;
      },
      { timeoutMs: 20_000, what: 'final commits' },
    );
    await watch.stop();
    expect(watch.samples).toBeGreaterThan(10);
    expect(watch.backwards).toEqual([]);
    expect(fleet.completedIds()).toEqual(new Set(jobIds));
    expect(orderViolations(fleet.read())).toEqual([]);
    await cleanup();
  });

  it('a 200,000-job backlog with a slow handler keeps the worker RSS bounded', async () => {
    const { topic, cleanup } = await jobTopic('wproc-rss', { partitions: 6 });
    const groupId = uniqueName('wproc-rss-g');
    // ~1 KB memos make the backlog ~250 MB on the broker.
    await enqueuePayments(topic, 200_000, 5000, { memo: (i) => `${i}`.padEnd(1000, '.'), batch: 2000 });
    fleet = new WorkerFleet({ topic, groupId, concurrency: 16, minMs: 2, maxMs: 4, maxBufferedJobs: 1000 });
    const child = fleet.start();
    await waitUntil(() => fleet!.completedIds().size > 2000, { timeoutMs: 60_000, what: 'progress' });
    let peak = 0;
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      peak = Math.max(peak, rssMiB(child.pid));
      await new Promise((r) => setTimeout(r, 250));
    }
    const done = fleet.completedIds().size;
    console.info(`backlog 200,000 x ~1.2 KB: worker peak RSS ${peak.toFixed(0)} MiB after ${done} jobs`);
    expect(done).toBeLessThan(200_000); // still a large backlog while measuring
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThan(300); // idle worker process: ~110 MiB (node, tsx loader, kafkajs, pino, prom-client)
    await cleanup();
  }, 240_000);
});
