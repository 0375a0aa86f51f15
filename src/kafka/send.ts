import type { Admin, Message, ProducerBatch, RecordMetadata } from 'kafkajs';
import { createKeyPartitioner } from './partitioner.js';

/** A producer or a transaction: anything kafkajs can send a batch through. */
export interface BatchSender {
  sendBatch(batch: ProducerBatch): Promise<RecordMetadata[]>;
}

/** The partition count of a topic. */
export type PartitionCounts = (topic: string) => Promise<number>;

/** Partition counts read through an admin client, cached for `ttlMs` (partitions can be added). */
export function partitionCounts(admin: Admin, ttlMs = 60_000): PartitionCounts {
  const cache = new Map<string, { count: number; at: number }>();
  return async (topic) => {
    const hit = cache.get(topic);
    if (hit && Date.now() - hit.at < ttlMs) return hit.count;
    const meta = await admin.fetchTopicMetadata({ topics: [topic] });
    const count = meta.topics[0]?.partitions.length ?? 0;
    if (count === 0) throw new Error(`topic ${topic} has no partitions`);
    cache.set(topic, { count, at: Date.now() });
    return count;
  };
}

/** Where the broker put one record. */
export interface Placement {
  topic: string;
  partition: number;
  offset: string;
}

/** Thrown when some partitions were still not acknowledged after every attempt; nothing is implied about them. */
export class UnacknowledgedSendError extends Error {
  constructor(readonly partitions: string[]) {
    super(`the brokers did not acknowledge ${partitions.join(', ')}`);
    this.name = 'UnacknowledgedSendError';
  }
}

const defaultPartitioner = createKeyPartitioner();

/**
 * Sends records (acks=all) and returns where each one landed, in input order — but only once
 * every partition written to was acknowledged.
 *
 * kafkajs' `send` can resolve without some partitions: its retry after a failed request keeps the
 * answers of brokers that already replied, so partitions whose leadership moved to such a broker
 * are never sent again, and the call still succeeds (tulios/kafkajs#1303; seen here when a leader
 * is killed mid-run). So every record gets an explicit partition (the Java client's default
 * choice when the caller gave none), and partitions missing from the answer are sent again, up
 * to `attempts` times. The idempotent producer keeps a resend from writing a record twice.
 */
export async function sendAcknowledged(
  sender: BatchSender,
  topicMessages: readonly { topic: string; messages: readonly Message[] }[],
  opts: { counts?: PartitionCounts; attempts?: number; onResend?: (partitions: string[]) => void } = {},
): Promise<Placement[]> {
  const placements: Placement[] = [];
  const pending = new Map<
    string,
    { topic: string; partition: number; messages: Message[]; slots: number[] }
  >();
  for (const { topic, messages } of topicMessages) {
    const count = messages.some((m) => m.partition === undefined)
      ? await (opts.counts ?? missingCounts)(topic)
      : 0;
    for (const message of messages) {
      const partition =
        message.partition ??
        defaultPartitioner(topic, (message.key as string | Buffer | null) ?? null, count);
      const tp = `${topic}[${partition}]`;
      let group = pending.get(tp);
      if (!group) {
        group = { topic, partition, messages: [], slots: [] };
        pending.set(tp, group);
      }
      group.messages.push({ ...message, partition });
      group.slots.push(placements.length);
      placements.push({ topic, partition, offset: '-1' });
    }
  }
  const attempts = opts.attempts ?? 5;
  for (let attempt = 1; pending.size > 0; attempt++) {
    const byTopic = new Map<string, Message[]>();
    for (const g of pending.values()) {
      const list = byTopic.get(g.topic);
      if (list) list.push(...g.messages);
      else byTopic.set(g.topic, [...g.messages]);
    }
    const answer = await sender.sendBatch({
      acks: -1,
      topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })),
    });
    for (const m of answer) {
      const tp = `${m.topicName}[${m.partition}]`;
      const group = pending.get(tp);
      if (!group || m.errorCode !== 0 || m.baseOffset === undefined) continue;
      const base = BigInt(m.baseOffset);
      group.slots.forEach((slot, i) => {
        placements[slot]!.offset = String(base + BigInt(i));
      });
      pending.delete(tp);
    }
    if (pending.size === 0) break;
    if (attempt >= attempts) throw new UnacknowledgedSendError([...pending.keys()]);
    opts.onResend?.([...pending.keys()]);
    await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** attempt, 2000)));
  }
  return placements;
}

function missingCounts(topic: string): Promise<number> {
  return Promise.reject(
    new Error(`sendAcknowledged: a record for ${topic} has no partition and no counts were given`),
  );
}
