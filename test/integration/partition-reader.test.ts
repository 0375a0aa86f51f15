import { describe, expect, it } from 'vitest';
import { readRanges } from '../../src/kafka/browse.js';
import { createKafka } from '../../src/kafka/client.js';
import { KafkaParkingPort } from '../../src/kafka/parking-port.js';
import type { FetchedRecord } from '../../src/ports.js';
import { createTopics, stack, uniqueName, waitUntil } from '../support/helpers.js';

describe('reading a compacted partition', () => {
  it('moves past a record batch that compaction left empty at the end of a segment (kafkajs alone stops there)', async () => {
    const { connection } = stack();
    const topic = uniqueName('compacted');
    // Segments of one record each (records of 600 KB, segments of at most 1 MiB), cleaned at once.
    const cleanup = await createTopics([
      {
        topic,
        configEntries: [
          { name: 'cleanup.policy', value: 'compact' },
          { name: 'segment.bytes', value: String(1024 * 1024) },
          { name: 'min.cleanable.dirty.ratio', value: '0.01' },
          { name: 'min.compaction.lag.ms', value: '0' },
        ],
      },
    ]);
    const kafka = createKafka(connection);
    const admin = kafka.admin();
    const big = (tag: string) => Buffer.concat([Buffer.from(tag), Buffer.alloc(600 * 1024)]);
    // Idempotent producers: the cleaner keeps each one's last batch, emptied, for its sequence numbers.
    const a = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    const b = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    let port: KafkaParkingPort | undefined;
    try {
      await admin.connect();
      await a.connect();
      await b.connect();
      const send = (p: typeof a, key: string) =>
        p.send({ topic, acks: -1, messages: [{ key, value: big(key) }] });
      await send(a, 'k1'); // offset 0
      await send(b, 'k2'); // offset 1: b's last batch, superseded by offset 2
      await send(a, 'k2'); // offset 2
      await send(a, 'k3'); // offset 3, the active segment (never cleaned)
      // Cleaned: offset 1's record is gone, its batch kept empty, alone in its segment.
      await waitUntil(
        async () => {
          const read = await readRanges(connection, topic, [{ partition: 0, from: 1, to: 2 }]);
          return read.length === 0;
        },
        { timeoutMs: 150_000, intervalMs: 2000, what: 'the log cleaner to compact offset 1 away' },
      );
      const read = await readRanges(connection, topic, [{ partition: 0, from: 0, to: 4 }], {
        progress: new Map(),
      });
      expect(read.map((r) => Number(r.message.offset))).toEqual([0, 2, 3]);

      port = new KafkaParkingPort(connection, admin, a, topic);
      const pages: FetchedRecord[] = [];
      const end = await port.scan(0, 0, (records) => pages.push(...records));
      expect(end).toBe(4);
      expect(pages.map((r) => [Number(r.offset), r.key?.toString()])).toEqual([
        [0, 'k1'],
        [2, 'k2'],
        [3, 'k3'],
      ]);
      expect((await port.read(0, [1, 2, 3])).map((r) => Number(r.offset))).toEqual([2, 3]);
    } finally {
      await port?.close();
      await a.disconnect().catch(() => undefined);
      await b.disconnect().catch(() => undefined);
      await admin.disconnect().catch(() => undefined);
      await cleanup();
    }
  }, 300_000);
});

describe('reading by exact offsets, read_committed', () => {
  it("finds a transactional producer's committed records after its aborted ones (the abort marker ends the aborted range)", async () => {
    const { connection } = stack();
    const topic = uniqueName('picked-txn');
    const cleanup = await createTopics([{ topic }]);
    const kafka = createKafka(connection);
    const admin = kafka.admin();
    const producer = kafka.producer({
      transactionalId: `${topic}-tx`,
      idempotent: true,
      maxInFlightRequests: 1,
    });
    let port: KafkaParkingPort | undefined;
    try {
      await admin.connect();
      await producer.connect();
      const write = async (values: string[], commit: boolean) => {
        const tx = await producer.transaction();
        const [meta] = await tx.send({
          topic,
          acks: -1,
          messages: values.map((v) => ({ key: v, value: v })),
        });
        if (commit) await tx.commit();
        else await tx.abort();
        return Number(meta!.baseOffset);
      };
      // A fetch from z covers the aborted transaction: the broker lists it as aborted from offset 2,
      // and its ABORT marker (offset 4) is what ends that range for the producer's later records.
      const z = await write(['z0'], true); // offset 0, commit marker 1
      const a = await write(['a1', 'a2'], false); // 2, 3, abort marker 4
      const b = await write(['b1', 'b2'], true); // 5, 6, commit marker 7
      const c = await write(['c1'], true); // 8, marker 9
      port = new KafkaParkingPort(connection, admin, producer, topic);
      const read = await port.read(0, [z, b, b + 1, c]);
      expect(read.map((r) => r.value?.toString())).toEqual(['z0', 'b1', 'b2', 'c1']);
      // The aborted ones are not there.
      expect(await port.read(0, [a, a + 1])).toEqual([]);
    } finally {
      await port?.close();
      await producer.disconnect();
      await admin.disconnect();
      await cleanup();
    }
  });
});
