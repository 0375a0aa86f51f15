import { randomUUID } from 'node:crypto';
import type { KafkaMessage } from 'kafkajs';
import { createKafka, type KafkaConnection, type KafkaLogSink } from './client.js';

/** A running reader of whole topics (every record from the beginning, then new ones as they come). */
export interface TopicTail {
  /** Leaves the group and disconnects; later records are not delivered. */
  stop(): Promise<void>;
}

export interface TailOptions {
  topics: string[];
  /** The throwaway consumer group is `<groupPrefix>-<uuid>`: it commits nothing. */
  groupPrefix: string;
  onRecord: (topic: string, partition: number, message: KafkaMessage) => void;
  /** Longest a fetch waits for new records (how soon a new record arrives). @defaultValue 1000 */
  maxWaitMs?: number;
  logSink?: KafkaLogSink;
}

/**
 * Reads small compacted topics (`__strand_status`, `__strand_control`) from the beginning and keeps
 * following them. kafkajs has no assign(), so this is a consumer group of its own that never
 * commits. Kafka 4's group coordinator keeps an empty group without offsets listed until its next
 * cleanup (`offsets.retention.check.interval.ms`, 10 minutes), so `stop` deletes the group.
 */
export async function tailTopics(conn: KafkaConnection, opts: TailOptions): Promise<TopicTail> {
  const kafka = createKafka({ ...conn, clientId: conn.clientId ?? opts.groupPrefix }, opts.logSink);
  const groupId = `${opts.groupPrefix}-${randomUUID()}`;
  const consumer = kafka.consumer({
    groupId,
    maxWaitTimeInMs: opts.maxWaitMs ?? 1000,
    sessionTimeout: 10_000,
    heartbeatInterval: 3000,
    // A status reader must not stay down after a fault kafkajs deems fatal: it only reads.
    retry: { retries: 5, restartOnFailure: async () => true },
  });
  await consumer.connect();
  try {
    await consumer.subscribe({ topics: opts.topics, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) opts.onRecord(batch.topic, batch.partition, m);
      },
    });
  } catch (error) {
    await consumer.disconnect().catch(() => undefined);
    throw error;
  }
  return {
    stop: async () => {
      await consumer.disconnect().catch(() => undefined);
      // Bounded: a stopping worker does not wait on a broker that is away.
      const admin = kafka.admin({ retry: { retries: 0 } });
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        (async () => {
          await admin.connect();
          await admin.deleteGroups([groupId]);
        })().catch(() => undefined),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, 2000);
        }),
      ]);
      clearTimeout(timer);
      await admin.disconnect().catch(() => undefined);
    },
  };
}
