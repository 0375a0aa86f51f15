import { describe, expect, it } from 'vitest';
import { createKafka } from '../../src/kafka/client.js';
import { KafkaParkingPort } from '../../src/kafka/parking-port.js';
import { PARKED_TOPIC_CONFIGS } from '../../src/kafka/topics.js';
import { createLogger } from '../../src/observability/logger.js';
import { systemClock } from '../../src/timing/clock.js';
import { ParkingState } from '../../src/worker/parking.js';
import { Worker } from '../../src/worker/worker.js';
import { createTopics, jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import type { Payment } from '../support/jobs.js';
import { newestParkingChanges, parkedBacklog } from '../support/parking-records.js';
import { rawProduceBulk } from '../support/raw-kafka.js';

const GROUP = 'g';
/** Job-topic offset of the key parked last (above every backlog offset). */
const LATE = 10_000_000;

describe('parking partitions past 200,000 records', () => {
  it('a new owner sees the newest state of a 400,000-record and a 200,000-record parking partition, and reads parked jobs back by offset', async () => {
    const { brokers, connection } = stack();
    const topic = `${uniqueName('parkread')}.parked`;
    const cleanup = await createTopics([{ topic, numPartitions: 2, configEntries: PARKED_TOPIC_CONFIGS }]);
    const sizes = [
      { partition: 0, keys: 1000, followers: 400 }, // 401,406 records: past twice the old cap
      { partition: 1, keys: 500, followers: 400 }, // 200,906 records: the old cap cut 906 silently
    ];
    const kafka = createKafka(connection);
    const admin = kafka.admin();
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 5 });
    let running = true;
    let port: KafkaParkingPort | undefined;
    try {
      const t0 = Date.now();
      let written = 0;
      for (const s of sizes)
        written += await rawProduceBulk(
          brokers,
          topic,
          parkedBacklog(GROUP, s.partition, s.keys, s.followers),
        );
      // After every older record was acknowledged: these are the partitions' newest records.
      for (const s of sizes)
        written += await rawProduceBulk(brokers, topic, newestParkingChanges(GROUP, s.partition, s, LATE));
      const writeMs = Date.now() - t0;
      await admin.connect();
      await producer.connect();
      port = new KafkaParkingPort(connection, admin, producer, topic);
      const state = new ParkingState({
        port,
        group: GROUP,
        clock: systemClock,
        logger: createLogger({ level: process.env.TEST_LOG ?? 'silent' }),
        running: () => running,
        random: Math.random,
      });
      const t1 = Date.now();
      for (const s of sizes) state.take(s.partition);
      let timer: NodeJS.Timeout | undefined;
      const loaded = await Promise.race([
        Promise.all(sizes.map((s) => state.ready(s.partition))).then(() => true),
        new Promise<false>((r) => (timer = setTimeout(() => r(false), 240_000))),
      ]);
      clearTimeout(timer);
      const loadMs = Date.now() - t1;
      expect(loaded, 'both parking partitions loaded within 240 s').toBe(true);

      for (const s of sizes) {
        // The key parked last is parked, with its jobs; the key released last is free.
        const late = state.get(s.partition, 'late');
        expect(late?.head, `partition ${s.partition}: key parked last`).toBe('h-late');
        expect(late?.followers.map((f) => f.src)).toEqual([LATE + 1, LATE + 2]);
        expect(
          state.get(s.partition, 'bulk-0'),
          `partition ${s.partition}: key released last`,
        ).toBeUndefined();
        expect(state.handedOff(s.partition, s.keys)).toBe(true); // bulk-0's first job (ran, tombstoned)
        expect(state.loadedTop(s.partition)).toBe(LATE + 2);
        const last = state.get(s.partition, `bulk-${s.keys - 1}`);
        expect(last?.followers.length).toBe(s.followers);
      }
      expect(state.counts()).toEqual({
        keys: sizes.reduce((n, s) => n + s.keys, 0), // every bulk key but bulk-0, plus late, per partition
        jobs: sizes.reduce((n, s) => n + (s.keys - 1) * s.followers + 2, 0),
      });

      // A release reads its key's jobs back by offset: 400 jobs spread over 400,000 records.
      const spread = state.get(0, 'bulk-999')!;
      const t2 = Date.now();
      const back = await state.read(0, spread.followers.slice(0, 500));
      const readBackMs = Date.now() - t2;
      expect(back.map((r) => Number(r.offset))).toEqual(spread.followers.map((f) => f.src));
      expect(back.every((r) => r.value?.toString().startsWith(`payload-${r.offset}-`))).toBe(true);
      expect(back[0]!.key?.toString()).toBe('bulk-999');
      console.info(JSON.stringify({ written, writeMs, loadMs, readBackMs, readBack: back.length }));
    } finally {
      running = false;
      await port?.close();
      await producer.disconnect().catch(() => undefined);
      await admin.disconnect().catch(() => undefined);
      await cleanup();
    }
  }, 420_000); // writing 602,308 records takes 70–100 s here, reading them 20–40 s

  it('/readyz answers 503 while the parked keys of a partition cannot be read, 200 once they can', async () => {
    const { brokers, registryUrl, connection } = stack();
    const { topic, cleanup } = await jobTopic('parkready', { partitions: 1, tierDelays: [1000] });
    const groupId = uniqueName('parkready-g');
    const admin = createKafka(connection).admin();
    const workers: Worker<Payment>[] = [];
    const start = async () => {
      const w = new Worker<Payment>({
        ...{ brokers, registry: { url: registryUrl }, topic, groupId, status: false },
        ...{ logger: createLogger({ level: process.env.TEST_LOG ?? 'silent' }), retry: { tiers: [1000] } },
        metrics: { port: 0, host: '127.0.0.1' },
        handler: async () => undefined,
      });
      workers.push(w);
      await w.start();
      return w;
    };
    const readyz = async (w: Worker<Payment>) =>
      (await fetch(`http://127.0.0.1:${w.metricsPort}/readyz`)).status;
    const owner = () => workers.find((w) => w.assignment().some((tp) => tp.topic === topic));
    try {
      await admin.connect();
      const [a, b] = [await start(), await start()];
      const first = await waitUntil(
        async () => {
          const o = owner();
          return o && (await readyz(a)) === 200 && (await readyz(b)) === 200 ? o : undefined;
        },
        { timeoutMs: 60_000, what: 'both workers ready, one owning partition 0' },
      );
      // The parking topic goes away and the owner leaves: the other member takes partition 0 and
      // must read its parked keys first, and cannot.
      await admin.deleteTopics({ topics: [`${topic}.parked`] });
      await waitUntil(async () => !(await admin.listTopics()).includes(`${topic}.parked`), {
        what: 'the parking topic deleted',
      });
      await first.stop();
      const stalled = first === a ? b : a;
      await waitUntil(async () => owner() === stalled && (await readyz(stalled)) === 503, {
        timeoutMs: 60_000,
        what: 'the new owner not ready while it cannot read the parked keys',
      });
      // Readable again: the owner reads it and is ready.
      await waitUntil(
        () =>
          admin
            .createTopics({
              waitForLeaders: true,
              topics: [{ topic: `${topic}.parked`, numPartitions: 1, configEntries: PARKED_TOPIC_CONFIGS }],
            })
            .catch(() => false),
        { timeoutMs: 60_000, intervalMs: 1000, what: 'the parking topic created again' },
      );
      await waitUntil(async () => (await readyz(stalled)) === 200, {
        timeoutMs: 60_000,
        what: 'the owner ready once its parked keys are read',
      });
    } finally {
      await Promise.all(workers.map((w) => w.stop({ timeoutMs: 1000 })));
      await admin.disconnect().catch(() => undefined);
      await cleanup();
    }
  });
});
