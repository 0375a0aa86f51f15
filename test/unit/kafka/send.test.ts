import type { ProducerBatch, RecordMetadata } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { createKeyPartitioner } from '../../../src/kafka/partitioner.js';
import { sendAcknowledged, UnacknowledgedSendError } from '../../../src/kafka/send.js';

/**
 * A sender that answers like kafkajs after a leader moved to a broker that had already replied:
 * success, but without the partitions listed in `drop` for the first `dropTimes` calls.
 */
function lossySender(drop: number[], dropTimes: number) {
  const logs = new Map<number, number>();
  const calls: ProducerBatch[] = [];
  return {
    calls,
    async sendBatch(batch: ProducerBatch): Promise<RecordMetadata[]> {
      calls.push(batch);
      const answer: RecordMetadata[] = [];
      const lossy = calls.length <= dropTimes;
      for (const { topic, messages } of batch.topicMessages ?? []) {
        const parts = new Map<number, number>();
        for (const m of messages) parts.set(m.partition!, (parts.get(m.partition!) ?? 0) + 1);
        for (const [partition, n] of parts) {
          if (lossy && drop.includes(partition)) continue;
          const base = logs.get(partition) ?? 0;
          logs.set(partition, base + n);
          answer.push({ topicName: topic, partition, errorCode: 0, baseOffset: String(base) });
        }
      }
      return answer;
    },
  };
}

describe('sendAcknowledged', () => {
  const messages = Array.from({ length: 30 }, (_, i) => ({ key: `k${i}`, value: `v${i}` }));

  it('sends partitions missing from the answer again and places every record', async () => {
    const sender = lossySender([1, 2], 1);
    const resent: string[][] = [];
    const placed = await sendAcknowledged(sender, [{ topic: 't', messages }], {
      counts: async () => 3,
      onResend: (p) => resent.push(p),
    });
    expect(sender.calls).toHaveLength(2);
    expect(resent.map((p) => [...p].sort())).toEqual([['t[1]', 't[2]']]);
    // The second request carries only the records of the dropped partitions.
    const second = sender.calls[1]!.topicMessages![0]!.messages;
    expect(new Set(second.map((m) => m.partition))).toEqual(new Set([1, 2]));
    const partitionOf = createKeyPartitioner();
    const next = new Map<number, number>();
    placed.forEach((p, i) => {
      expect(p.partition).toBe(partitionOf('t', `k${i}`, 3));
      const expected = next.get(p.partition) ?? 0;
      expect(p.offset).toBe(String(expected));
      next.set(p.partition, expected + 1);
    });
  });

  it('gives up with the partitions named when they are never acknowledged', async () => {
    const sender = lossySender([0], 99);
    const error = await sendAcknowledged(sender, [{ topic: 't', messages }], {
      counts: async () => 2,
      attempts: 3,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnacknowledgedSendError);
    expect((error as Error).message).toBe('the brokers did not acknowledge t[0]');
    expect(sender.calls).toHaveLength(3);
  });

  it('keeps explicit partitions and needs no partition counts for them', async () => {
    const sender = lossySender([], 0);
    const placed = await sendAcknowledged(sender, [
      { topic: 'a', messages: [{ key: 'x', value: '1', partition: 4 }] },
    ]);
    expect(placed).toEqual([{ topic: 'a', partition: 4, offset: '0' }]);
  });
});
