import { describe, expect, it } from 'vitest';
import { type OffsetsInTransaction, sendOffsetsInTransaction } from '../../../src/kafka/transaction.js';

/** An error shaped as kafkajs' KafkaJSProtocolError for the given protocol error type. */
function protocolError(type: string): Error {
  return Object.assign(new Error(`${type} answer`), { name: 'KafkaJSProtocolError', type });
}

/** A transaction whose sendOffsets fails with `failures` in turn, then succeeds. */
function fakeTransaction(failures: string[]) {
  const calls: OffsetsInTransaction[] = [];
  return {
    calls,
    tx: {
      sendOffsets: async (offsets: OffsetsInTransaction) => {
        calls.push(offsets);
        const failure = failures[calls.length - 1];
        if (failure) throw protocolError(failure);
      },
    },
  };
}

const offsets: OffsetsInTransaction = {
  consumerGroupId: 'strand-dlq-replay.t.abc',
  topics: [{ topic: 't.dlq', partitions: [{ partition: 0, offset: '5' }] }],
};

describe('offsets in a transaction while the coordinator is busy', () => {
  it('CONCURRENT_TRANSACTIONS (the previous commit still being written) is asked again, with backoff', async () => {
    const { tx, calls } = fakeTransaction(['CONCURRENT_TRANSACTIONS', 'CONCURRENT_TRANSACTIONS']);
    const waits: number[] = [];
    await sendOffsetsInTransaction(tx, offsets, {
      wait: async (ms) => void waits.push(ms),
      random: () => 0.5,
    });
    expect(calls).toEqual([offsets, offsets, offsets]);
    // The `transaction` policy: 50 ms doubling (jitter centred by random() = 0.5).
    expect(waits).toEqual([50, 100]);
  });

  it('a coordinator loading or moving is asked again too', async () => {
    const { tx, calls } = fakeTransaction(['COORDINATOR_LOAD_IN_PROGRESS', 'NOT_COORDINATOR']);
    await sendOffsetsInTransaction(tx, offsets, { wait: async () => undefined });
    expect(calls).toHaveLength(3);
  });

  it('a fenced producer is not retried: its error is thrown at once', async () => {
    const { tx, calls } = fakeTransaction(['INVALID_PRODUCER_EPOCH']);
    await expect(sendOffsetsInTransaction(tx, offsets, { wait: async () => undefined })).rejects.toThrow(
      'INVALID_PRODUCER_EPOCH answer',
    );
    expect(calls).toHaveLength(1);
  });

  it('gives up past its budget with the last answer', async () => {
    const { tx, calls } = fakeTransaction(Array(1000).fill('CONCURRENT_TRANSACTIONS'));
    await expect(
      sendOffsetsInTransaction(tx, offsets, {
        budgetMs: 30,
        wait: (ms) => new Promise((r) => setTimeout(r, Math.min(ms, 10))),
      }),
    ).rejects.toThrow('CONCURRENT_TRANSACTIONS answer');
    expect(calls.length).toBeGreaterThan(1);
    expect(calls.length).toBeLessThan(20);
  });
});
