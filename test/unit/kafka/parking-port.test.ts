import type { Kafka } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import type { Admin, Producer } from '../../../src/kafka/client.js';
import { KafkaParkingPort, ParkingFencedError } from '../../../src/kafka/parking-port.js';

/** A kafkajs stand-in: transactional producers that log each step, with a switch for each failure. */
function fakeKafka() {
  const steps: string[] = [];
  const fail: { send?: Error | undefined; commit?: Error | undefined } = {};
  let offset = 0;
  let n = 0;
  const kafka = {
    producer: (config: { transactionalId: string }) => {
      const id = `${config.transactionalId}#${++n}`;
      return {
        connect: async () => void steps.push(`connect ${id}`),
        disconnect: async () => void steps.push(`disconnect ${id}`),
        transaction: async () => ({
          sendBatch: async (batch: {
            topicMessages: { topic: string; messages: { partition: number }[] }[];
          }) => {
            if (fail.send) throw fail.send;
            const { topic, messages } = batch.topicMessages[0]!;
            steps.push(`send ${messages.length} to ${topic}[${messages[0]!.partition}] by ${id}`);
            const baseOffset = String(offset);
            offset += messages.length + 1; // and the commit marker
            return [{ topicName: topic, partition: messages[0]!.partition, errorCode: 0, baseOffset }];
          },
          commit: async () => {
            if (fail.commit) throw fail.commit;
            steps.push(`commit ${id}`);
          },
          abort: async () => void steps.push(`abort ${id}`),
        }),
      };
    },
  } as unknown as Kafka;
  const port = new KafkaParkingPort(
    { brokers: [] },
    {} as Admin,
    {} as Producer,
    'jobs.parked',
    async () => 2,
    { kafka, groupId: 'g' },
  );
  return { port, steps, fail };
}

const rec = (key: string) => ({ key, value: Buffer.from('v'), headers: {}, partition: 0 });

describe('KafkaParkingPort, fenced writes', () => {
  it("takes the partition's transactional id (an empty transaction), then writes in one transaction each, resolved after the commit", async () => {
    const { port, steps } = fakeKafka();
    await expect(port.write(0, [rec('a')])).rejects.toBeInstanceOf(ParkingFencedError);
    expect(port.holds(0)).toBe(false);
    await port.fence(0);
    expect(steps).toEqual(['connect strand-park.g.jobs.parked.0#1', 'abort strand-park.g.jobs.parked.0#1']);
    expect(port.holds(0)).toBe(true);
    // Two writes within 2 ms: one transaction.
    const both = await Promise.all([port.write(0, [rec('a'), rec('b')]), port.write(0, [rec('c')])]);
    expect(both).toEqual([[0, 1], [2]]);
    expect(steps.slice(2)).toEqual([
      'send 3 to jobs.parked[0] by strand-park.g.jobs.parked.0#1',
      'commit strand-park.g.jobs.parked.0#1',
    ]);
    await port.close();
  });

  it('a write refused as fenced rejects, lets the id go and refuses the next one at once; a failed send is aborted and the id kept', async () => {
    const { port, steps, fail } = fakeKafka();
    await port.fence(1);
    fail.send = Object.assign(new Error('not enough replicas'), { type: 'NOT_ENOUGH_REPLICAS' });
    await expect(port.write(1, [rec('a')])).rejects.toThrow('not enough replicas');
    expect(steps.at(-1)).toBe('abort strand-park.g.jobs.parked.1#1');
    expect(port.holds(1)).toBe(true);
    fail.send = undefined;
    fail.commit = Object.assign(new Error('fenced'), { type: 'PRODUCER_FENCED' });
    await expect(port.write(1, [rec('b')])).rejects.toBeInstanceOf(ParkingFencedError);
    expect(port.holds(1)).toBe(false);
    expect(steps.at(-1)).toBe('disconnect strand-park.g.jobs.parked.1#1');
    fail.commit = undefined;
    await expect(port.write(1, [rec('c')])).rejects.toBeInstanceOf(ParkingFencedError);
    // Only a new take holds it again (a new producer: a new epoch).
    await port.fence(1);
    await expect(port.write(1, [rec('d')])).resolves.toHaveLength(1);
    expect(steps.at(-1)).toBe('commit strand-park.g.jobs.parked.1#2');
    await port.close();
  });
});

describe('KafkaParkingPort, reading by exact offsets', () => {
  /** A partition of 5,000 records of 400 bytes: a fetch answers as many whole records as its byte limit holds. */
  function fakeReader(port: KafkaParkingPort) {
    const fetches: { at: number; maxBytes: number }[] = [];
    const end = 5000;
    (port as unknown as { reader: unknown }).reader = {
      fetch: async (_t: string, _p: number, at: number, maxBytes: number, wanted: (o: number) => boolean) => {
        fetches.push({ at, maxBytes });
        const next = Math.min(end, at + Math.max(1, Math.floor(maxBytes / 400)));
        const records = [];
        for (let o = at; o < next; o++)
          if (wanted(o))
            records.push({ offset: String(o), key: null, value: Buffer.alloc(300), headers: {} });
        return { records, next, lastStable: end, end };
      },
    };
    return fetches;
  }

  it('reads many close offsets in a few fetches sized to them, not in 64 KiB fetches', async () => {
    const { port } = fakeKafka();
    const fetches = fakeReader(port);
    const wanted = Array.from({ length: 2000 }, (_, i) => 100 + i);
    const got = await port.read(0, wanted);
    expect(got.map((r) => Number(r.offset))).toEqual(wanted);
    // 2,000 records of 400 bytes: 13 fetches of 64 KiB; sized to the span, one or two.
    expect(fetches.length).toBeLessThanOrEqual(2);
    // A few far apart: each fetch stays small (64 KiB).
    fetches.length = 0;
    expect((await port.read(0, [10, 3000])).map((r) => r.offset)).toEqual(['10', '3000']);
    expect(fetches.map((f) => f.maxBytes)).toEqual([64 * 1024, 64 * 1024]);
  });
});
