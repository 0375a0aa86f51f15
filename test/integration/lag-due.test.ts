import { spawn } from 'node:child_process';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type Admin, createKafka, Partitioners, type Producer } from '../../src/kafka/client.js';
import { computeLag, DesiredReplicas, tierDelaysOf, totalLag } from '../../src/lag/lag.js';
import { topicNames } from '../../src/topology/topics.js';
import { jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';

/**
 * Desired replicas count retry-tier records only once they are due: a tier full of jobs due in an
 * hour must not scale the fleet up now. `queue_depth_pending` (lag) stays the raw count.
 */
const HOUR = 3_600_000;
let admin: Admin;
let producer: Producer;
// Fresh clients per test: kafkajs keeps asking for the metadata of every topic a client once used.
beforeEach(async () => {
  const kafka = createKafka(stack().connection);
  admin = kafka.admin();
  producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await admin.connect();
  await producer.connect();
});
afterEach(async () => {
  await producer?.disconnect();
  await admin?.disconnect();
});

/** `count` records into partition 0 of `topic`, appended (CreateTime) at `timestamp`. */
async function append(topic: string, count: number, timestamp = Date.now()): Promise<void> {
  const messages = Array.from({ length: count }, (_, i) => ({
    partition: 0,
    key: `k${i % 7}`,
    value: Buffer.from(`job ${i}`),
    timestamp: String(timestamp),
  }));
  for (let i = 0; i < messages.length; i += 500)
    await producer.send({ topic, acks: -1, messages: messages.slice(i, i + 500) });
}

const autoscale = { targetLagPerReplica: 100, minReplicas: 1, maxReplicas: 50, scaleDownWindowMs: 0 };

describe('desired replicas follow the due lag', () => {
  it('records in a 1-hour tier do not raise the desired count; due ones do', async () => {
    const delays = [HOUR, 1000];
    const { topic, cleanup } = await jobTopic('lag-due', { partitions: 1, tierDelays: delays });
    const { tiers } = topicNames(topic, delays.length);
    const [hourTier, secondTier] = tiers as [string, string];
    const groupId = uniqueName('lag-due-g');
    const opts = { tierDelays: tierDelaysOf(tiers, delays) };
    const read = (now?: number) =>
      computeLag(admin, groupId, [topic, ...tiers], now === undefined ? opts : { ...opts, now });

    // 1,000 jobs routed to the 1-hour tier just now: pending, none due.
    await append(hourTier, 1000);
    let rows = await read();
    expect(totalLag(rows)).toBe(1000);
    expect(totalLag(rows, 'due')).toBe(0);
    const desired = new DesiredReplicas(autoscale);
    const notDue = desired.update(totalLag(rows, 'due'));
    console.info(
      `1,000 records in the 1 h tier: lag ${totalLag(rows)}, due 0 → desired ${notDue} (raw lag would ask for ${desired.raw(totalLag(rows))})`,
    );
    expect(notDue).toBe(1);
    // An hour later they are all due.
    expect(totalLag(await read(Date.now() + HOUR + 5000), 'due')).toBe(1000);

    // Jobs that went to a tier long enough ago are due: 300 appended two hours ago in a tier of their
    // own topic order (older records first), 200 in the 1-second tier, 50 on the job topic.
    const { topic: topic2, cleanup: cleanup2 } = await jobTopic('lag-due-mixed', {
      partitions: 1,
      tierDelays: delays,
    });
    const tiers2 = topicNames(topic2, delays.length).tiers as [string, string];
    const opts2 = { tierDelays: tierDelaysOf(tiers2, delays) };
    await append(tiers2[0], 300, Date.now() - 2 * HOUR);
    await append(tiers2[0], 700);
    await append(tiers2[1], 200);
    await append(topic2, 50);
    rows = await computeLag(admin, groupId, [topic2, ...tiers2], opts2);
    const byTopic = (t: string) => rows.find((r) => r.topic === t)!;
    expect(byTopic(tiers2[0])).toMatchObject({ lag: 1000, due: 300 });
    expect(byTopic(topic2)).toMatchObject({ lag: 50, due: 50 });
    expect(byTopic(tiers2[1]).lag).toBe(200);
    // The 1-second tier's records become due a second after they were appended.
    await waitUntil(
      async () => (await computeLag(admin, groupId, [tiers2[1]], opts2)).every((r) => r.due === 200),
      { timeoutMs: 10_000, what: '1 s tier due' },
    );
    rows = await computeLag(admin, groupId, [topic2, ...tiers2], opts2);
    const due = totalLag(rows, 'due');
    const mixed = new DesiredReplicas(autoscale).update(due);
    console.info(`mixed: lag ${totalLag(rows)}, due ${due} → desired ${mixed}`);
    expect(due).toBe(550);
    expect(mixed).toBe(6);

    // Committed offsets count: 100 of the due tier records done leaves 200 due, still 1,000 − 100 pending.
    await admin.setOffsets({ groupId, topic: tiers2[0], partitions: [{ partition: 0, offset: '100' }] });
    rows = await computeLag(admin, groupId, [tiers2[0]], opts2);
    expect(rows[0]).toMatchObject({ committed: 100, lag: 900, due: 200 });
    // Past the due point: nothing due, the rest pending.
    await admin.setOffsets({ groupId, topic: tiers2[0], partitions: [{ partition: 0, offset: '400' }] });
    rows = await computeLag(admin, groupId, [tiers2[0]], opts2);
    expect(rows[0]).toMatchObject({ committed: 400, lag: 600, due: 0 });
    // A topic without a delay counts as due at once (the job topic, or a tier nobody told us about).
    expect((await computeLag(admin, groupId, [hourTier]))[0]).toMatchObject({ lag: 1000, due: 1000 });
    expect(secondTier).toBe(`${topic}.retry.2`);
    await cleanup2();
    await cleanup();
  });

  it('strand exporter --retry-tiers: queue_depth_pending stays raw, queue_desired_replicas follows the due lag', async () => {
    const delays = [HOUR];
    const { topic, cleanup } = await jobTopic('lag-due-exp', { partitions: 1, tierDelays: delays });
    const tier = `${topic}.retry.1`;
    await append(tier, 900);
    await append(topic, 150);
    const groupId = uniqueName('lag-due-exp-g');
    const exporter = spawn(
      process.execPath,
      [
        'dist/cli/main.js',
        'exporter',
        '--group',
        groupId,
        '--topic',
        topic,
        '--retry-tiers',
        '1h',
        '--target-lag-per-replica',
        '100',
        '--port',
        '0',
        '--host',
        '127.0.0.1',
      ],
      {
        env: { ...process.env, STRAND_BROKERS: stack().brokers.join(',') },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    try {
      let out = '';
      let err = '';
      exporter.stdout.on('data', (d) => (out += d));
      exporter.stderr.on('data', (d) => (err += d));
      const url = await waitUntil(
        () => {
          if (exporter.exitCode !== null)
            throw new Error(`exporter exited ${exporter.exitCode}: ${err.trim()}`);
          return /(http:\/\/\S+)\/metrics/.exec(out)?.[1];
        },
        { timeoutMs: 20_000, what: 'exporter URL' },
      );
      const text = await (await fetch(`${url}/metrics`)).text();
      const value = (name: string, labels: Record<string, string>) => {
        const line = text
          .split('\n')
          .find(
            (l) =>
              l.startsWith(`${name}{`) && Object.entries(labels).every(([k, v]) => l.includes(`${k}="${v}"`)),
          );
        return line === undefined ? undefined : Number(line.split(' ').pop());
      };
      expect(value('queue_depth_pending', { topic: tier, partition: '0', group: groupId })).toBe(900);
      expect(value('queue_depth_pending', { topic, partition: '0', group: groupId })).toBe(150);
      // 150 due on the job topic → 2 replicas; counting the tier's 900 would ask for 11.
      expect(value('queue_desired_replicas', { group: groupId })).toBe(2);
    } finally {
      exporter.kill('SIGKILL');
    }
    await cleanup();
  });
});
