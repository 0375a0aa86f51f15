import { createRequire } from 'node:module';
import type { KafkaMessage } from 'kafkajs';
import { type Admin, createKafka, type KafkaConnection } from './client.js';

/** Offsets `[from, to)` of one partition. */
export interface OffsetRange {
  partition: number;
  from: number;
  to: number;
}

/** A record read by {@link readRanges}. */
export interface BrowsedRecord {
  topic: string;
  partition: number;
  message: KafkaMessage;
}

/** Fails at once for a topic that does not exist (the client would retry for a while first). */
export async function assertTopicExists(admin: Admin, topic: string): Promise<void> {
  if (!(await admin.listTopics()).includes(topic)) throw new Error(`topic ${topic} does not exist`);
}

/** Log-start and log-end offsets of each partition of a topic. */
export async function partitionBounds(
  conn: KafkaConnection,
  topic: string,
): Promise<{ partition: number; low: number; high: number }[]> {
  const admin = createKafka(conn).admin();
  await admin.connect();
  try {
    await assertTopicExists(admin, topic);
    const offsets = await admin.fetchTopicOffsets(topic);
    return offsets
      .map((o) => ({ partition: o.partition, low: Number(o.low), high: Number(o.high) }))
      .sort((a, b) => a.partition - b.partition);
  } finally {
    await admin.disconnect();
  }
}

/** The first offset of each partition whose timestamp is at or after `at` (the log end when none). */
export async function offsetsAtTime(
  conn: KafkaConnection,
  topic: string,
  at: number,
): Promise<Map<number, number>> {
  const admin = createKafka(conn).admin();
  await admin.connect();
  try {
    const found = await admin.fetchTopicOffsetsByTimestamp(topic, at);
    return new Map(found.map((o) => [o.partition, Number(o.offset)]));
  } finally {
    await admin.disconnect();
  }
}

/** What the reader uses of kafkajs' cluster object (handed to partition assigners). */
interface FetchCluster {
  addTargetTopic(topic: string): Promise<void>;
  refreshMetadata(): Promise<void>;
  findLeaderForPartitions(topic: string, partitions: number[]): Record<string, number[]>;
  findBroker(args: { nodeId: string }): Promise<{
    fetch(args: {
      replicaId: number;
      isolationLevel: number;
      maxWaitTime: number;
      minBytes: number;
      maxBytes: number;
      topics: { topic: string; partitions: { partition: number; fetchOffset: string; maxBytes: number }[] }[];
    }): Promise<{ responses: { topicName: string; partitions: FetchedPartition[] }[] }>;
  }>;
}

interface FetchedPartition {
  partition: number;
  highWatermark: string;
  lastStableOffset: string;
  messages: { offset: string }[];
}

/** kafkajs' own batch (aborted transactions and control records filtered as its consumer does). */
const require = createRequire(import.meta.url);
const KafkajsBatch = require('kafkajs/src/consumer/batch') as new (
  topic: string,
  fetchedOffset: string,
  partitionData: FetchedPartition,
) => { messages: KafkaMessage[]; rawMessages: { offset: string }[] };

/**
 * Reads the records of `ranges` (clamped to what the partitions retain) and resolves with them in
 * partition and offset order. No consumer group: fetch requests go straight to each partition's
 * leader (read committed, as a consumer reads), through the cluster object kafkajs hands to
 * partition assigners, so nothing waits for a group coordinator or a join, and no group is left
 * behind. Stops when every range is read, at the partition's last stable offset, at `timeoutMs`,
 * or at `maxRecords`. `opts.progress` receives, per partition, the offset up to which the range
 * was read (its end when it was read whole), so an incremental reader asks again for the rest.
 */
export async function readRanges(
  conn: KafkaConnection,
  topic: string,
  ranges: OffsetRange[],
  opts: { timeoutMs?: number; maxRecords?: number; progress?: Map<number, number> } = {},
): Promise<BrowsedRecord[]> {
  const kafka = createKafka({ ...conn, clientId: conn.clientId ?? 'strand-console' });
  const admin = kafka.admin();
  let cluster: FetchCluster | undefined;
  // Never joins: the consumer only connects its cluster, which the assigner factory hands over.
  const consumer = kafka.consumer({
    groupId: 'strand-browse-unused',
    partitionAssigners: [
      (config) => {
        cluster = config.cluster as unknown as FetchCluster;
        return {
          name: 'strand-browse',
          version: 1,
          assign: async () => [],
          protocol: () => ({ name: 'strand-browse', metadata: Buffer.alloc(0) }),
        };
      },
    ],
  });
  const out: BrowsedRecord[] = [];
  const progress = opts.progress;
  const maxRecords = opts.maxRecords ?? 200_000;
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  await admin.connect();
  try {
    const bounds = await admin.fetchTopicOffsets(topic);
    const next = new Map<number, { at: number; to: number }>();
    for (const r of ranges) {
      const b = bounds.find((x) => x.partition === r.partition);
      if (!b) continue;
      const from = Math.max(r.from, Number(b.low));
      const to = Math.min(r.to, Number(b.high));
      if (from < to) next.set(r.partition, { at: from, to });
      progress?.set(r.partition, from < to ? from : Math.max(r.from, Math.min(r.to, Number(b.high))));
    }
    if (next.size === 0) return out;
    await consumer.connect();
    if (!cluster) throw new Error('kafkajs did not hand its cluster to the partition assigner');
    const c = cluster;
    await c.addTargetTopic(topic);
    while (next.size > 0 && out.length < maxRecords && Date.now() < deadline) {
      const leaders = c.findLeaderForPartitions(topic, [...next.keys()]);
      for (const [nodeId, partitions] of Object.entries(leaders)) {
        const broker = await c.findBroker({ nodeId });
        const res = await broker.fetch({
          replicaId: -1,
          isolationLevel: 1,
          maxWaitTime: 100,
          minBytes: 1,
          maxBytes: 8 * 1024 * 1024,
          topics: [
            {
              topic,
              partitions: partitions.map((partition) => ({
                partition,
                fetchOffset: String(next.get(partition)!.at),
                maxBytes: 1024 * 1024,
              })),
            },
          ],
        });
        for (const data of res.responses.flatMap((r) => r.partitions)) {
          const range = next.get(data.partition);
          if (!range) continue;
          const batch = new KafkajsBatch(topic, String(range.at), data);
          for (const m of batch.messages) {
            const offset = Number(m.offset);
            if (offset >= range.at && offset < range.to && out.length < maxRecords)
              out.push({ topic, partition: data.partition, message: m });
          }
          const raw = batch.rawMessages;
          // Past every offset the fetch covered (markers and aborted records included); nothing
          // fetched means the range reached what read-committed consumers may see.
          const reached = raw.length ? Number(raw[raw.length - 1]!.offset) + 1 : range.to;
          range.at = Math.max(range.at, reached);
          const done = range.at >= range.to || range.at >= Number(data.lastStableOffset);
          progress?.set(data.partition, done ? range.to : range.at);
          if (done) next.delete(data.partition);
        }
      }
    }
  } finally {
    await consumer.disconnect().catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
  }
  return out.sort((a, b) => a.partition - b.partition || Number(a.message.offset) - Number(b.message.offset));
}
