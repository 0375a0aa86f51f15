import { randomUUID } from 'node:crypto';
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

/**
 * Reads the records of `ranges` (clamped to what the partitions retain) and resolves with them in
 * partition and offset order. A throwaway group starts exactly at each range: its offsets are set
 * before it joins (other partitions at their end), so nothing before a range is fetched. Stops
 * when every range is read, after `idleMs` without a batch once the group has joined (gaps of
 * compaction or transaction markers), at `timeoutMs`, or at `maxRecords`. `opts.progress` receives,
 * per partition, the offset up to which the range was read (the range's end when it was read
 * whole), so a caller that reads incrementally asks again for the rest. A transient failure (a
 * coordinator not yet available under load) is tried again, up to three times.
 */
export async function readRanges(
  conn: KafkaConnection,
  topic: string,
  ranges: OffsetRange[],
  opts: { timeoutMs?: number; idleMs?: number; maxRecords?: number; progress?: Map<number, number> } = {},
): Promise<BrowsedRecord[]> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await readRangesOnce(conn, topic, ranges, opts);
    } catch (error) {
      if (attempt >= 3 || (error as { retriable?: boolean }).retriable === false) throw error;
      await new Promise((r) => setTimeout(r, 500 * attempt));
    }
  }
}

async function readRangesOnce(
  conn: KafkaConnection,
  topic: string,
  ranges: OffsetRange[],
  opts: { timeoutMs?: number; idleMs?: number; maxRecords?: number; progress?: Map<number, number> },
): Promise<BrowsedRecord[]> {
  const kafka = createKafka({ ...conn, clientId: conn.clientId ?? 'strand-console' });
  const admin = kafka.admin();
  await admin.connect();
  const groupId = `strand-console-read-${randomUUID()}`;
  const out: BrowsedRecord[] = [];
  const progress = opts.progress;
  try {
    const bounds = await admin.fetchTopicOffsets(topic);
    const wanted = new Map<number, { from: number; to: number }>();
    for (const r of ranges) {
      const b = bounds.find((x) => x.partition === r.partition);
      if (!b) continue;
      const from = Math.max(r.from, Number(b.low));
      const to = Math.min(r.to, Number(b.high));
      if (from < to) wanted.set(r.partition, { from, to });
      else progress?.set(r.partition, Math.max(r.from, Math.min(r.to, Number(b.high))));
    }
    if (wanted.size === 0) return out;
    for (const [partition, range] of wanted) progress?.set(partition, range.from);
    await admin.setOffsets({
      groupId,
      topic,
      partitions: bounds.map((b) => ({
        partition: b.partition,
        offset: String(wanted.get(b.partition)?.from ?? b.high),
      })),
    });
    const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 200, sessionTimeout: 10_000 });
    const maxRecords = opts.maxRecords ?? 200_000;
    const remaining = new Set(wanted.keys());
    await consumer.connect();
    try {
      await new Promise<void>((resolve, reject) => {
        // Idle time counts from the join: joining a group can take seconds on a loaded broker.
        let lastBatch = Number.POSITIVE_INFINITY;
        consumer.on(consumer.events.GROUP_JOIN, () => {
          lastBatch = Date.now();
        });
        const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
        const finish = (error?: unknown) => {
          clearInterval(timer);
          if (error === undefined) resolve();
          else reject(error);
        };
        const timer = setInterval(() => {
          const now = Date.now();
          if (now > deadline || now - lastBatch > (opts.idleMs ?? 3000)) finish();
        }, 100);
        consumer.subscribe({ topic, fromBeginning: true }).then(
          () =>
            consumer
              .run({
                autoCommit: false,
                eachBatch: async ({ batch }) => {
                  lastBatch = Date.now();
                  const range = wanted.get(batch.partition);
                  if (!range || !remaining.has(batch.partition)) return;
                  for (const m of batch.messages) {
                    const offset = Number(m.offset);
                    if (offset >= range.from && offset < range.to && out.length < maxRecords) {
                      out.push({ topic, partition: batch.partition, message: m });
                      progress?.set(batch.partition, offset + 1);
                    }
                  }
                  const last = Number(batch.messages[batch.messages.length - 1]?.offset ?? -1);
                  if (last + 1 >= range.to || Number(batch.lastOffset()) + 1 >= range.to) {
                    remaining.delete(batch.partition);
                    progress?.set(batch.partition, range.to);
                  }
                  if (remaining.size === 0 || out.length >= maxRecords) finish();
                },
              })
              .catch(finish),
          finish,
        );
      });
    } finally {
      await consumer.disconnect().catch(() => undefined);
    }
  } finally {
    await admin.deleteGroups([groupId]).catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
  }
  return out.sort((a, b) => a.partition - b.partition || Number(a.message.offset) - Number(b.message.offset));
}
