import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { KafkaConsumerPort } from '../../../src/kafka/worker-port.js';
import { createLogger } from '../../../src/observability/logger.js';
import type { FetchedBatch } from '../../../src/ports.js';

// kafkajs' own pause bookkeeping (what decides which partitions its fetch loop asks for).
const SubscriptionState = createRequire(import.meta.url)(
  'kafkajs/src/consumer/subscriptionState',
) as new () => {
  assign(tps: { topic: string; partitions: number[] }[]): void;
  pause(tps: { topic: string; partitions?: number[] }[]): void;
  resume(tps: { topic: string; partitions?: number[] }[]): void;
  isPaused(topic: string, partition: number): boolean;
};

/** A kafkajs consumer reduced to what the port calls, its pauses kept by kafkajs' SubscriptionState. */
function fakeKafka() {
  const state = new SubscriptionState();
  let eachBatch: ((payload: unknown) => Promise<void>) | undefined;
  const consumer = {
    events: {},
    on: () => undefined,
    connect: async () => undefined,
    subscribe: async () => undefined,
    run: async (o: { eachBatch: typeof eachBatch }) => {
      eachBatch = o.eachBatch;
    },
    pause: (tps: { topic: string; partitions?: number[] }[]) => state.pause(tps),
    resume: (tps: { topic: string; partitions?: number[] }[]) => state.resume(tps),
  };
  const kafka = { consumer: () => consumer };
  /** A fetched batch of `topic`/`partition` as kafkajs hands it over; its pause pauses the one partition. */
  const fetch = (topic: string, partition: number) =>
    eachBatch!({
      batch: { topic, partition, messages: [], lastOffset: () => '0' },
      resolveOffset: () => undefined,
      heartbeat: async () => undefined,
      isRunning: () => true,
      isStale: () => false,
      pause: () => {
        state.pause([{ topic, partitions: [partition] }]);
        return () => state.resume([{ topic, partitions: [partition] }]);
      },
    });
  return { kafka, state, fetch };
}

describe('KafkaConsumerPort pause', () => {
  it('a batch pausing one partition of a paused topic leaves the whole topic paused; resuming one partition of it does not fetch it', async () => {
    const { kafka, state, fetch } = fakeKafka();
    const port = new KafkaConsumerPort(kafka as never, {} as never, {
      ...{ groupId: 'g', topics: ['jobs', 'jobs.retry.1'], fromBeginning: true },
      ...{ sessionTimeoutMs: 30_000, heartbeatIntervalMs: 3000, rebalanceTimeoutMs: 30_000 },
      ...{ partitionsConsumedConcurrently: 1, logger: createLogger({ level: 'silent' }) },
    });
    state.assign([{ topic: 'jobs.retry.1', partitions: [0, 1, 2] }]);
    // The intake pauses a tier partition whose head is not due: the batch's own pause.
    const onBatch = async (b: FetchedBatch) => void b.pause();
    await port.start({} as never, onBatch);
    port.pause(['jobs', 'jobs.retry.1']); // Worker.pause()
    await fetch('jobs.retry.1', 0); // a batch fetched before the pause took effect
    expect([0, 1, 2].map((p) => state.isPaused('jobs.retry.1', p))).toEqual([true, true, true]);
    port.resumePartitions([{ topic: 'jobs.retry.1', partition: 0 }]); // its head came due
    expect(state.isPaused('jobs.retry.1', 0)).toBe(true);
    port.resume(['jobs', 'jobs.retry.1']); // Worker.resume()
    expect([0, 1, 2].map((p) => state.isPaused('jobs.retry.1', p))).toEqual([false, false, false]);
    // Not paused whole: a batch's pause is its partition's alone, and its resume resumes it.
    await fetch('jobs.retry.1', 1);
    expect([0, 1, 2].map((p) => state.isPaused('jobs.retry.1', p))).toEqual([false, true, false]);
    port.resumePartitions([{ topic: 'jobs.retry.1', partition: 1 }]);
    expect(state.isPaused('jobs.retry.1', 1)).toBe(false);
  });
});
