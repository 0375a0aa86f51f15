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

  it('inside a transaction sends nothing again: a missing partition throws at once (the caller aborts)', async () => {
    const sender = lossySender([1], 1);
    const resent: string[][] = [];
    const error = await sendAcknowledged(sender, [{ topic: 't', messages }], {
      counts: async () => 3,
      attempts: 5,
      inTransaction: true,
      onResend: (p) => resent.push(p),
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnacknowledgedSendError);
    expect(sender.calls).toHaveLength(1);
    expect(resent).toEqual([]);
  });

  it('keeps explicit partitions and needs no partition counts for them', async () => {
    const sender = lossySender([], 0);
    const placed = await sendAcknowledged(sender, [
      { topic: 'a', messages: [{ key: 'x', value: '1', partition: 4 }] },
    ]);
    expect(placed).toEqual([{ topic: 'a', partition: 4, offset: '0' }]);
  });

  it('one request at a time per producer: concurrent sends wait and go together, each placed where it landed', async () => {
    // kafkajs gives a failed request's sequence numbers back before retrying; a concurrent send on
    // the same idempotent producer could take them (tulios/kafkajs#1005): so never two at once.
    const sender = lossySender([], 0);
    let inFlight = 0;
    let most = 0;
    const slow = {
      calls: sender.calls,
      async sendBatch(batch: ProducerBatch) {
        inFlight++;
        most = Math.max(most, inFlight);
        await new Promise((r) => setTimeout(r, 5));
        try {
          return await sender.sendBatch(batch);
        } finally {
          inFlight--;
        }
      },
    };
    const sends = Array.from({ length: 20 }, (_, i) =>
      sendAcknowledged(slow, [{ topic: 't', messages: [{ key: 'k', value: `v${i}`, partition: 0 }] }]),
    );
    const placed = await Promise.all(sends);
    expect(most).toBe(1);
    // The first went alone; the 19 that arrived meanwhile went in one request.
    expect(sender.calls).toHaveLength(2);
    expect(placed.map((p) => p[0]!.offset)).toEqual(Array.from({ length: 20 }, (_, i) => String(i)));
    const values = sender.calls.flatMap((c) => c.topicMessages![0]!.messages.map((m) => m.value));
    expect(values).toEqual(Array.from({ length: 20 }, (_, i) => `v${i}`));
  });

  it('of sends that went together, one whose partitions were acknowledged is placed though another failed', async () => {
    const sender = lossySender([1], 99);
    const first = sendAcknowledged(sender, [
      { topic: 't', messages: [{ key: 'a', value: '0', partition: 0 }] },
    ]);
    const [ok, bad] = await Promise.allSettled([
      sendAcknowledged(sender, [{ topic: 't', messages: [{ key: 'b', value: '1', partition: 0 }] }], {
        attempts: 2,
      }),
      sendAcknowledged(sender, [{ topic: 't', messages: [{ key: 'c', value: '2', partition: 1 }] }], {
        attempts: 2,
      }),
    ]);
    expect((await first)[0]!.offset).toBe('0');
    expect(ok).toEqual({ status: 'fulfilled', value: [{ topic: 't', partition: 0, offset: '1' }] });
    expect(bad.status).toBe('rejected');
    expect((bad as PromiseRejectedResult).reason).toBeInstanceOf(UnacknowledgedSendError);
  });
});
