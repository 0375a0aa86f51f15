import { describe, expect, it } from 'vitest';
import { NonRetriableError } from '../../src/failure/errors.js';
import { createKafka } from '../../src/kafka/client.js';
import { startExporter } from '../support/exporter.js';
import { jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { enqueuePayments } from '../support/jobs.js';
import { paymentWorker } from '../support/worker.js';

/** The `queue_dlq_depth` samples of a /metrics text: their labels (as written) and values. */
function dlqSamples(text: string): { labels: string; value: number }[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('queue_dlq_depth{'))
    .map((l) => ({ labels: l.slice(l.indexOf('{'), l.indexOf('}') + 1), value: Number(l.split(' ').pop()) }));
}

describe('queue_dlq_depth of a DLQ shared by several groups', () => {
  it('is one series per topic, the same from every group and the exporter: summed over everything reporting it, each dead job counts once', async () => {
    const { topic, cleanup } = await jobTopic('dlq-groups', { partitions: 2 });
    // Each group runs its own copy of every job and dead-letters its own copy of the poison one.
    const handler = async (job: { data: { memo: string | null } }) => {
      if (job.data.memo === 'poison') throw new NonRetriableError('poison');
    };
    const workers = ['a', 'b'].map((g) =>
      paymentWorker(topic, uniqueName(`dlq-groups-${g}`), {
        metrics: { port: 0, host: '127.0.0.1' },
        lagIntervalMs: 300,
        handler,
      }),
    );
    let exporter: { metricsUrl: string; kill: () => void } | undefined;
    try {
      await Promise.all(workers.map((w) => w.start()));
      await enqueuePayments(topic, 6, 3, { memo: (i) => (i === 4 ? 'poison' : null) });
      const admin = createKafka(stack().connection).admin();
      await admin.connect();
      const dead = () =>
        admin.fetchTopicOffsets(`${topic}.dlq`).then((o) => o.reduce((s, p) => s + Number(p.high), 0));
      await waitUntil(async () => (await dead()) === 2, {
        timeoutMs: 60_000,
        what: 'one dead copy per group',
      });
      await admin.disconnect();
      exporter = await startExporter([
        '--group',
        workers[0]!.options.groupId,
        '--topic',
        topic,
        '--interval',
        '300',
      ]);
      const urls = [...workers.map((w) => `http://127.0.0.1:${w.metricsPort}/metrics`), exporter.metricsUrl];
      let samples: { labels: string; value: number }[] = [];
      await waitUntil(
        async () => {
          samples = (
            await Promise.all(urls.map(async (u) => dlqSamples(await (await fetch(u)).text())))
          ).flat();
          return samples.length === 3 && samples.every((s) => s.value === 2);
        },
        { timeoutMs: 20_000, what: 'queue_dlq_depth 2 from both workers and the exporter' },
      );
      // Every reporter writes the same series: what Prometheus would keep apart is the instance only,
      // so max by (topic), then a sum over topics or groups, counts the 2 dead jobs once.
      expect(new Set(samples.map((s) => s.labels))).toEqual(new Set([`{topic="${topic}"}`]));
    } finally {
      exporter?.kill();
      await Promise.all(workers.map((w) => w.stop()));
      await cleanup();
    }
  });
});
