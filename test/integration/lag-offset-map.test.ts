import { describe, expect, it } from 'vitest';
import { replayDeadJobs } from '../../src/failure/dlq.js';
import { NonRetriableError } from '../../src/failure/errors.js';
import { HEADERS } from '../../src/headers.js';
import { createKafka } from '../../src/kafka/client.js';
import { runCli } from '../support/cli.js';
import { gauge, startExporter } from '../support/exporter.js';
import { jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { enqueuePayments } from '../support/jobs.js';
import { rawConsume } from '../support/raw-kafka.js';
import { paymentWorker } from '../support/worker.js';

/**
 * Lag counts jobs still to do, not `end − committed`: one slow job holds the commit point while the
 * jobs behind it finish; the offset map in the commit says which (docs/metrics.md). Checked on the
 * worker's gauges, `strand lag --json` and `strand exporter`, against the truth the handler counts
 * and the transaction markers counted by a plain kafkajs consumer (Strand's code not involved).
 */

async function endOffset(topic: string): Promise<number> {
  const admin = createKafka(stack().connection).admin();
  await admin.connect();
  try {
    return Number((await admin.fetchTopicOffsets(topic)).find((o) => o.partition === 0)?.high ?? 0);
  } finally {
    await admin.disconnect();
  }
}

describe('lag with jobs finished above the commit point', () => {
  it('one slow job with 5,000 finished behind it: pending = what is unfinished (+ markers above the point), desired replicas 1; 0 once it ends', async () => {
    const { topic, cleanup } = await jobTopic('lag-map', { partitions: 1 });
    const groupId = uniqueName('lag-map-g');
    // Offset 0: the slow job (key acct-0). Then 5,000 jobs over 500 keys: acct-0's 10 wait behind
    // it (key order), the 10 of acct-7 fail into the DLQ and are replayed below, the rest complete.
    await enqueuePayments(topic, 1, 1, { memo: () => 'slow' });
    await enqueuePayments(topic, 5000, 500, { memo: (i) => (i % 500 === 7 ? 'dead' : null) });
    let release: () => void = () => undefined;
    const slowGate = new Promise<void>((r) => (release = r));
    let finished = 0;
    const worker = paymentWorker(topic, groupId, {
      concurrency: 50,
      lagIntervalMs: 300,
      metrics: { port: 0, host: '127.0.0.1' },
      autoscale: { targetLagPerReplica: 100, minReplicas: 1, maxReplicas: 50, scaleDownWindowMs: 0 },
      handler: async (job) => {
        if (job.data.memo === 'slow') await slowGate;
        else if (job.data.memo === 'dead' && job.headers[HEADERS.replayCount] === undefined)
          throw new NonRetriableError('dead on purpose');
      },
    });
    worker.on('job:completed', () => finished++);
    worker.on('job:dead', () => finished++);
    let exporter: { metricsUrl: string; kill: () => void } | undefined;
    try {
      await worker.start();
      const metricsUrl = `http://127.0.0.1:${worker.metricsPort}/metrics`;
      await waitUntil(() => finished === 5000 - 10, { timeoutMs: 120_000, what: 'all but acct-0 ended' });
      // The dead jobs go back to the job topic in one Kafka transaction: a commit marker follows them.
      expect((await replayDeadJobs(stack().connection, topic, {})).sent).toBe(10);
      // More jobs after the marker, so it sits between jobs (acct-0's one waits too).
      await enqueuePayments(topic, 100, 100);
      const jobs = 1 + 5000 + 10 + 100;
      const end = await endOffset(topic);
      // Offsets without a job, counted by a plain consumer: end − records it reads.
      const markers = end - (await rawConsume(stack().brokers, topic, jobs)).length;
      expect(markers).toBeGreaterThanOrEqual(1);
      const unfinished = 1 + 10 + 1; // the slow job and the acct-0 jobs behind it
      await waitUntil(() => finished === jobs - unfinished, {
        timeoutMs: 60_000,
        what: 'replayed jobs ended',
      });
      // The commit point is held at offset 0: every marker is above it and counts until it passes.
      const expected = unfinished + markers;

      let text = '';
      await waitUntil(
        async () => {
          text = await (await fetch(metricsUrl)).text();
          const pending = gauge(text, 'queue_depth_pending', { topic, partition: '0' });
          if (pending !== expected) throw new Error(`queue_depth_pending ${pending}`);
          return true;
        },
        { timeoutMs: 20_000, what: `worker queue_depth_pending ${expected}` },
      );
      expect(gauge(text, 'queue_desired_replicas', { group: groupId })).toBe(1);
      console.info(
        `slow job holding the commit point at 0, end ${end}, ${jobs - unfinished} jobs done above it: ` +
          `queue_depth_pending ${expected} (${unfinished} unfinished + ${markers} marker), desired replicas 1`,
      );

      const cli = await runCli(['lag', '--group', groupId, '--topic', topic, '--json']);
      expect(cli.code, cli.stderr).toBe(0);
      const [row] = JSON.parse(cli.stdout) as {
        committed: number;
        doneAbove: number;
        lag: number;
        end: number;
      }[];
      expect(row).toMatchObject({ committed: 0, end, lag: expected, doneAbove: end - expected });

      exporter = await startExporter([
        '--group',
        groupId,
        '--topic',
        topic,
        '--target-lag-per-replica',
        '100',
        '--interval',
        '300',
      ]);
      const exported = await (await fetch(exporter.metricsUrl)).text();
      expect(gauge(exported, 'queue_depth_pending', { topic, partition: '0', group: groupId })).toBe(
        expected,
      );
      expect(gauge(exported, 'queue_desired_replicas', { group: groupId })).toBe(1);

      // The slow job ends: everything is done, markers included, so the lag reaches 0 everywhere.
      release();
      await waitUntil(() => finished === jobs, { timeoutMs: 30_000, what: 'every job ended' });
      await waitUntil(
        async () => {
          const [w, e] = await Promise.all([
            fetch(metricsUrl).then((r) => r.text()),
            fetch(exporter!.metricsUrl).then((r) => r.text()),
          ]);
          return (
            gauge(w, 'queue_depth_pending', { topic, partition: '0' }) === 0 &&
            gauge(e, 'queue_depth_pending', { topic, partition: '0', group: groupId }) === 0
          );
        },
        { timeoutMs: 20_000, what: 'lag 0 on the worker and the exporter' },
      );
      const after = await runCli(['lag', '--group', groupId, '--topic', topic, '--json']);
      expect(JSON.parse(after.stdout)).toMatchObject([{ committed: end, doneAbove: 0, lag: 0 }]);
    } finally {
      release();
      exporter?.kill();
      await worker.stop();
      await cleanup();
    }
  });
});
