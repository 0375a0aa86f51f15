import { describe, expect, it } from 'vitest';
import { createKafka } from '../../src/kafka/client.js';
import { KafkaConsumerPort } from '../../src/kafka/worker-port.js';
import { createLogger } from '../../src/observability/logger.js';
import { committedOffsets, createTopics, stack, uniqueName, waitUntil } from '../support/helpers.js';

describe('KafkaConsumerPort.commit against the real broker', () => {
  it('a commit the coordinator took resolves (kafkajs announced it); one on a stopped consumer fails', async () => {
    const topic = uniqueName('port-commit');
    const groupId = `${topic}-g`;
    const cleanup = await createTopics([{ topic, numPartitions: 1 }]);
    const kafka = createKafka(stack().connection);
    const admin = kafka.admin();
    await admin.connect();
    const port = new KafkaConsumerPort(kafka, admin, {
      groupId,
      topics: [topic],
      fromBeginning: true,
      sessionTimeoutMs: 10_000,
      heartbeatIntervalMs: 1000,
      rebalanceTimeoutMs: 10_000,
      partitionsConsumedConcurrently: 1,
      logger: createLogger({ level: 'silent' }),
    });
    let assigned = false;
    try {
      await port.start(
        {
          beforeRejoin: async () => undefined,
          assigned: () => {
            assigned = true;
          },
          crashed: () => undefined,
        },
        async () => undefined,
      );
      await waitUntil(() => assigned, { what: 'the assignment' });
      // Member of the group: the commit is sent and lands.
      await port.commit([{ topic, partition: 0, offset: 3, metadata: '' }]);
      expect((await committedOffsets(groupId, topic)).get(0)).toBe(3);

      // Stopped (kafkajs drops its group): the commit fails and nothing moves. A commit under way
      // when the runner stops resolves without sending (the unit test worker-port-commit.test.ts).
      const consumer = (port as unknown as { consumer: { stop(): Promise<void> } }).consumer;
      await consumer.stop();
      await expect(port.commit([{ topic, partition: 0, offset: 7, metadata: '' }])).rejects.toThrow();
      expect((await committedOffsets(groupId, topic)).get(0)).toBe(3);
    } finally {
      await port.stop().catch(() => undefined);
      await admin.disconnect();
      await cleanup();
    }
  });
});
