import { describe, expect, it } from 'vitest';
import { KafkaConsumerPort } from '../../../src/kafka/worker-port.js';
import { createLogger } from '../../../src/observability/logger.js';

/**
 * A kafkajs consumer reduced to `commitOffsets` and its COMMIT_OFFSETS event. kafkajs' runner
 * (src/consumer/runner.js `commitOffsets`) resolves without sending when it is not running — after
 * a crash, while it restarts, or when a failed attempt finds it stopped — and emits COMMIT_OFFSETS
 * (synchronously) only for a commit the coordinator took.
 */
function fakeKafka(running: () => boolean) {
  const listeners: ((e: unknown) => void)[] = [];
  const consumer = {
    events: { COMMIT_OFFSETS: 'consumer.commit_offsets' },
    on: (name: string, l: (e: unknown) => void) => {
      if (name !== 'consumer.commit_offsets') return () => undefined;
      listeners.push(l);
      return () => listeners.splice(listeners.indexOf(l), 1);
    },
    connect: async () => undefined,
    subscribe: async () => undefined,
    run: async () => undefined,
    commitOffsets: async (offsets: { topic: string; partition: number; offset: string }[]) => {
      await new Promise((r) => setTimeout(r, 1));
      if (!running()) return; // kafkajs: "consumer not running, exiting"
      const topics = [...new Set(offsets.map((o) => o.topic))].map((topic) => ({
        topic,
        partitions: offsets
          .filter((o) => o.topic === topic)
          .map(({ partition, offset }) => ({ partition, offset })),
      }));
      for (const l of [...listeners]) l({ payload: { topics } });
    },
  };
  return { consumer: () => consumer };
}

async function portOn(running: () => boolean) {
  const port = new KafkaConsumerPort(fakeKafka(running) as never, {} as never, {
    groupId: 'g',
    topics: ['t'],
    fromBeginning: true,
    sessionTimeoutMs: 10_000,
    heartbeatIntervalMs: 1000,
    rebalanceTimeoutMs: 10_000,
    partitionsConsumedConcurrently: 1,
    logger: createLogger({ level: 'silent' }),
  });
  await port.start(
    { beforeRejoin: async () => undefined, assigned: () => undefined, crashed: () => undefined },
    async () => undefined,
  );
  return port;
}

describe('KafkaConsumerPort.commit', () => {
  it('resolves for a commit kafkajs sent (announced with the offsets asked for)', async () => {
    const port = await portOn(() => true);
    await expect(
      port.commit([
        { topic: 't', partition: 0, offset: 5, metadata: '' },
        { topic: 't', partition: 1, offset: 9, metadata: '' },
      ]),
    ).resolves.toBeUndefined();
  });

  it('throws for one kafkajs skipped because its runner is not running (it used to pass for committed)', async () => {
    const port = await portOn(() => false);
    await expect(port.commit([{ topic: 't', partition: 0, offset: 5, metadata: '' }])).rejects.toThrow(
      /offset commit not sent: the consumer is not running/,
    );
  });
});
