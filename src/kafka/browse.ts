import type { KafkaMessage } from 'kafkajs';
import { type Admin, createKafka, type KafkaConnection } from './client.js';
import { PartitionReader } from './partition-reader.js';

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

/**
 * Reads the records of `ranges` (clamped to what the partitions retain) and resolves with them in
 * partition and offset order, through a {@link PartitionReader} of its own (closed at the end).
 * Stops when every range is read, at the partition's last stable offset, at `timeoutMs`, or at
 * `maxRecords`. `opts.progress` receives, per partition, the offset up to which the range was read
 * — never past a record not returned — so an incremental reader asks again for the rest.
 */
export async function readRanges(
  conn: KafkaConnection,
  topic: string,
  ranges: OffsetRange[],
  opts: { timeoutMs?: number; maxRecords?: number; progress?: Map<number, number> } = {},
): Promise<BrowsedRecord[]> {
  const connection = { ...conn, clientId: conn.clientId ?? 'strand-console' };
  const admin = createKafka(connection).admin();
  const reader = new PartitionReader(connection);
  const out: BrowsedRecord[] = [];
  const progress = opts.progress;
  const maxRecords = opts.maxRecords ?? 200_000;
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  await admin.connect();
  try {
    const bounds = await admin.fetchTopicOffsets(topic);
    const reads: { partition: number; at: number; to: number }[] = [];
    for (const r of ranges) {
      const b = bounds.find((x) => x.partition === r.partition);
      if (!b) continue;
      const from = Math.max(r.from, Number(b.low));
      const to = Math.min(r.to, Number(b.high));
      if (from < to) reads.push({ partition: r.partition, at: from, to });
      progress?.set(r.partition, from < to ? from : Math.max(r.from, Math.min(r.to, Number(b.high))));
    }
    await Promise.all(
      reads.map(async (range) => {
        while (range.at < range.to && out.length < maxRecords && Date.now() < deadline) {
          const got = await reader.fetch(topic, range.partition, range.at, 1024 * 1024);
          let next = Math.min(got.next, range.to);
          for (const m of got.records) {
            const offset = Number(m.offset);
            if (offset >= range.to) break;
            if (out.length >= maxRecords) {
              next = offset;
              break;
            }
            out.push({ topic, partition: range.partition, message: m });
          }
          const moved = next > range.at;
          range.at = next;
          progress?.set(range.partition, range.at);
          // Nothing more that read-committed readers may see yet (or, never seen, a fetch that
          // covered nothing: asked again by the caller rather than in a busy loop here).
          if (range.at >= got.lastStable || !moved) break;
        }
      }),
    );
  } finally {
    await reader.close();
    await admin.disconnect().catch(() => undefined);
  }
  return out.sort((a, b) => a.partition - b.partition || Number(a.message.offset) - Number(b.message.offset));
}
