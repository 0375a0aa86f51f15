import { Partitioners } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { createKafka } from '../../src/kafka/client.js';
import {
  KafkaParkingPort,
  ParkingFencedError,
  parkingTransactionalIdOf,
} from '../../src/kafka/parking-port.js';
import { PARKED_TOPIC_CONFIGS } from '../../src/kafka/topics.js';
import { createLogger } from '../../src/observability/logger.js';
import type { FetchedRecord } from '../../src/ports.js';
import { systemClock } from '../../src/timing/clock.js';
import { ParkingState } from '../../src/worker/parking.js';
import { createTopics, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { jobMaker } from '../support/parking-records.js';

const GROUP = 'g';
const logger = createLogger({ level: process.env.TEST_LOG ?? 'silent' });
const job = jobMaker();

/** Every record of the partition a read_committed reader sees, as `key` strings. */
async function visible(port: KafkaParkingPort, partition: number): Promise<string[]> {
  const seen: FetchedRecord[] = [];
  await port.scan(partition, 0, (records) => seen.push(...records));
  return seen.map((r) => r.key?.toString() ?? '');
}

/**
 * Parking writes are fenced (issue 25's known gap): the owner of job-topic partition p takes parking
 * partition p's transactional id before it reads it, so a member out of the group that still runs
 * jobs (a zombie) gets its later writes refused, and its write still open is aborted.
 */
describe('fenced parking writes', () => {
  it('a writer whose parking transactional id a second owner took gets its write refused, and the second owner never sees it', async () => {
    const { connection } = stack();
    const topic = `${uniqueName('parkfence')}.parked`;
    const cleanup = await createTopics([{ topic, numPartitions: 2, configEntries: PARKED_TOPIC_CONFIGS }]);
    const kafka = createKafka(connection);
    const admin = kafka.admin();
    const plain = kafka.producer({ idempotent: true, maxInFlightRequests: 5 });
    const ports: KafkaParkingPort[] = [];
    const port = () => {
      const p = new KafkaParkingPort(connection, admin, plain, topic, undefined, {
        kafka,
        groupId: GROUP,
        logger,
      });
      ports.push(p);
      return p;
    };
    const lost: number[] = [];
    const state = (p: KafkaParkingPort) =>
      new ParkingState({
        ...{ port: p, group: GROUP, clock: systemClock, logger },
        ...{ running: () => true, random: Math.random, lost: (partition: number) => lost.push(partition) },
      });
    try {
      await admin.connect();
      await plain.connect();
      const oldPort = port();
      const old = state(oldPort);
      old.take(0);
      await old.ready(0);
      await old.park(job('hot', 3));
      const parked = old.get(0, 'hot')!;
      await old.follow(job('hot', 4), parked);
      // Right after the commit, the records read back by offset (a release does this at once).
      expect((await old.read(0, parked.followers)).map((r) => r.offset)).toEqual(['4']);

      // The second owner takes the id, then reads: it sees the first owner's committed writes.
      const newPort = port();
      const owner = state(newPort);
      owner.take(0);
      await owner.ready(0);
      expect(owner.get(0, 'hot')?.head).toBe('hot-3');
      expect(oldPort.holds(0)).toBe(true); // it has not noticed yet

      // The first owner (a zombie now) parks again: refused, and nothing of it is visible.
      const refused = await old.park(job('zombie', 9)).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(refused).toBeInstanceOf(ParkingFencedError);
      expect(oldPort.holds(0)).toBe(false);
      expect(lost).toEqual([0]);
      // Its next try is refused at once (only a new ownership takes the id again).
      await expect(old.follow(job('hot', 5), parked)).rejects.toBeInstanceOf(ParkingFencedError);
      expect(await old.unchanged(0)).toBe(false);

      // The owner's own write lands; a third reader sees the owner's records and none of the zombie's.
      await owner.follow(job('hot', 6), owner.get(0, 'hot')!);
      const reader = new KafkaParkingPort(connection, admin, plain, topic);
      ports.push(reader);
      // (Read to the last stable offset: the commit's markers land a moment after its answer.)
      const keys: string[] = await waitUntil(async () => {
        const seen = await visible(reader, 0);
        return seen.some((k) => k.endsWith('f:6')) ? seen : undefined;
      });
      expect(keys.some((k) => k.includes('zombie'))).toBe(false);
      expect(keys.filter((k) => k.endsWith('f:5'))).toEqual([]);
      expect(keys.filter((k) => k.endsWith('f:6'))).toHaveLength(1);
    } finally {
      await Promise.all(ports.map((p) => p.close()));
      await plain.disconnect().catch(() => undefined);
      await admin.disconnect().catch(() => undefined);
      await cleanup();
    }
  }, 120_000);

  it("a zombie's write still open when the new owner takes the id is aborted: never visible, its commit refused", async () => {
    const { connection } = stack();
    const topic = `${uniqueName('parkfence')}.parked`;
    const cleanup = await createTopics([{ topic, numPartitions: 1, configEntries: PARKED_TOPIC_CONFIGS }]);
    const kafka = createKafka(connection);
    const admin = kafka.admin();
    const plain = kafka.producer({ idempotent: true });
    // The zombie's producer under the partition's id, a transaction open with one record in it.
    const zombie = kafka.producer({
      transactionalId: parkingTransactionalIdOf(GROUP, topic, 0),
      idempotent: true,
      maxInFlightRequests: 1,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    const owner = new KafkaParkingPort(connection, admin, plain, topic, undefined, {
      kafka,
      groupId: GROUP,
      logger,
    });
    try {
      await admin.connect();
      await plain.connect();
      await zombie.connect();
      const tx = await zombie.transaction();
      await tx.send({ topic, messages: [{ key: 'g\u0000k:zombie', value: '{}', partition: 0 }] });
      // The owner takes the id (the open transaction is aborted), then reads: nothing there.
      await owner.fence(0);
      expect(await visible(owner, 0)).toEqual([]);
      await expect(tx.commit()).rejects.toThrow();
      await owner.write(0, [{ key: 'g\u0000k:owner', value: Buffer.from('{}'), headers: {}, partition: 0 }]);
      const seen: string[] = await waitUntil(async () => {
        const keys = await visible(owner, 0);
        return keys.length > 0 ? keys : undefined;
      });
      expect(seen).toEqual(['g\u0000k:owner']);
    } finally {
      await zombie.disconnect().catch(() => undefined);
      await owner.close();
      await plain.disconnect().catch(() => undefined);
      await admin.disconnect().catch(() => undefined);
      await cleanup();
    }
  }, 120_000);

  it('the cost: sequential parking writes, fenced (a transaction each) and plain', async () => {
    const { connection } = stack();
    const topic = `${uniqueName('parkfence')}.parked`;
    const cleanup = await createTopics([{ topic, numPartitions: 1, configEntries: PARKED_TOPIC_CONFIGS }]);
    const kafka = createKafka(connection);
    const admin = kafka.admin();
    const plain = kafka.producer({ idempotent: true, maxInFlightRequests: 5 });
    const fenced = new KafkaParkingPort(connection, admin, plain, topic, undefined, {
      kafka,
      groupId: GROUP,
      logger,
    });
    const unfenced = new KafkaParkingPort(connection, admin, plain, topic);
    const N = 50;
    const time = async (p: KafkaParkingPort) => {
      const ms: number[] = [];
      for (let i = 0; i < N; i++) {
        const t = performance.now();
        await p.write(0, [{ key: `g\u0000f:${i}`, value: Buffer.from('v'), headers: {}, partition: 0 }]);
        ms.push(performance.now() - t);
      }
      ms.sort((a, b) => a - b);
      return { p50: ms[N / 2]!.toFixed(1), p90: ms[Math.floor(N * 0.9)]!.toFixed(1) };
    };
    try {
      await admin.connect();
      await plain.connect();
      await fenced.fence(0);
      await time(unfenced); // warm-up of connections and metadata
      const before = await time(unfenced);
      const after = await time(fenced);
      console.log(
        `parking write latency ms (sequential, ${N} each): plain ${JSON.stringify(before)}, fenced ${JSON.stringify(after)}`,
      );
    } finally {
      await Promise.all([fenced.close(), unfenced.close()]);
      await plain.disconnect().catch(() => undefined);
      await admin.disconnect().catch(() => undefined);
      await cleanup();
    }
  }, 120_000);
});
