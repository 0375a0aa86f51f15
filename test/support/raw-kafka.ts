import { randomUUID } from 'node:crypto';
import { type Admin, type IHeaders, Kafka, logLevel } from 'kafkajs';

/**
 * A client independent of Strand's code: kafkajs' own producer and consumer, configured here and not
 * through `src/kafka/`, with no codec. Tests use it to write bytes a Strand producer never would
 * (poison records) and to read back exactly what is on a topic (raw bytes and headers). It comes with
 * the npm dependencies, so the tests need no tool installed by hand.
 */
export interface RawRecord {
  partition: number;
  offset: number;
  key: string | null;
  value: Buffer | null;
  headers: Record<string, string>;
}

function rawKafka(brokers: string[]): Kafka {
  return new Kafka({ brokers, clientId: 'strand-test-raw', logLevel: logLevel.NOTHING });
}

function headerStrings(headers: IHeaders | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, v] of Object.entries(headers ?? {})) {
    const one = Array.isArray(v) ? v[0] : v;
    if (one !== undefined) out[name] = Buffer.isBuffer(one) ? one.toString('utf8') : String(one);
  }
  return out;
}

/**
 * `admin.fetchTopicOffsets`, retried while a partition's leader is not ready (kafkajs gives up on
 * the first "not the leader" answer, which a broker gives for a moment after a topic was created).
 */
async function offsetsOf(admin: Admin, topic: string) {
  for (let attempt = 0; ; attempt++) {
    try {
      return await admin.fetchTopicOffsets(topic);
    } catch (error) {
      const retriable = (error as { retriable?: boolean }).retriable === true;
      if (attempt >= 9 || !retriable) throw error;
      await new Promise((r) => setTimeout(r, Math.min(2_000, 100 * 2 ** attempt)));
    }
  }
}

/**
 * Reads a topic from the beginning (committed records only, as any consumer sees them) until
 * `count` records were read or the end of every partition was reached (like `kcat -e` does), within
 * `timeoutMs`. The throwaway group it reads with is deleted afterwards.
 */
export async function rawConsume(
  brokers: string[],
  topic: string,
  count: number,
  opts: { timeoutMs?: number } = {},
): Promise<RawRecord[]> {
  const kafka = rawKafka(brokers);
  const admin = kafka.admin();
  await admin.connect();
  const groupId = `strand-test-raw-${randomUUID()}`;
  const consumer = kafka.consumer({ groupId, maxBytesPerPartition: 4 * 1024 * 1024, maxWaitTimeInMs: 200 });
  const records: RawRecord[] = [];
  try {
    // Where each partition ends now; a partition is read when the consumer's position passed it
    // (the position counts transaction markers and aborted records too).
    const ends = new Map<number, number>();
    for (const o of await offsetsOf(admin, topic))
      if (Number(o.high) > Number(o.low)) ends.set(o.partition, Number(o.high));
    if (ends.size === 0 || count <= 0) return [];
    const position = new Map<number, number>();
    const atEnd = () => [...ends].every(([p, end]) => (position.get(p) ?? 0) >= end);
    let joinedAt = 0;
    consumer.on(consumer.events.GROUP_JOIN, () => {
      joinedAt = Date.now();
    });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    let finish: () => void = () => undefined;
    const finished = new Promise<void>((resolve) => (finish = resolve));
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        for (const m of batch.messages) {
          if (records.length >= count) break;
          records.push({
            partition: batch.partition,
            offset: Number(m.offset),
            key: m.key === null ? null : m.key.toString('utf8'),
            value: m.value,
            headers: headerStrings(m.headers),
          });
        }
        position.set(batch.partition, Number(batch.lastOffset()) + 1);
        if (records.length >= count || atEnd()) finish();
      },
    });
    // A batch with only markers or aborted records is not handed to eachBatch: its end shows in the
    // fetch positions only, so a partition quiet for 3 s after the group was joined counts as read.
    let lastSize = 0;
    let lastRecordAt = 0;
    const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
    while (Date.now() < deadline) {
      const done = await Promise.race([
        finished.then(() => true),
        new Promise<false>((r) => setTimeout(() => r(false), 250)),
      ]);
      if (done) break;
      if (records.length !== lastSize) {
        lastSize = records.length;
        lastRecordAt = Date.now();
      } else if (joinedAt > 0 && Date.now() - Math.max(joinedAt, lastRecordAt) > 3000) break;
    }
    return records;
  } finally {
    await consumer.disconnect().catch(() => undefined);
    await admin.deleteGroups([groupId]).catch(() => undefined);
    await admin.disconnect();
  }
}

/**
 * Produces raw bytes (acks from every in-sync replica): poison records a Strand producer would
 * never write. An empty `value` is sent as a null value (a tombstone).
 */
export async function rawProduce(
  brokers: string[],
  topic: string,
  records: {
    key?: string | null;
    value: Buffer | null;
    partition?: number;
    headers?: Record<string, string>;
  }[],
): Promise<void> {
  const kafka = rawKafka(brokers);
  // kafkajs drops a message for a partition the topic does not have without a word: refuse it here.
  const wanted = records.map((r) => r.partition ?? 0);
  if (Math.max(...wanted) > 0) {
    const admin = kafka.admin();
    await admin.connect();
    const meta = await admin.fetchTopicMetadata({ topics: [topic] }).finally(() => admin.disconnect());
    const count = meta.topics[0]?.partitions.length ?? 0;
    const missing = wanted.find((p) => p >= count);
    if (missing !== undefined) throw new Error(`${topic} has ${count} partitions, no partition ${missing}`);
  }
  // Idempotent: a send kafkajs retries (e.g. on a topic created a moment ago) must not write twice.
  const producer = kafka.producer({
    allowAutoTopicCreation: false,
    idempotent: true,
    maxInFlightRequests: 1,
  });
  await producer.connect();
  try {
    await producer.send({
      topic,
      acks: -1,
      messages: records.map((r) => ({
        key: r.key ?? null,
        value: r.value && r.value.length > 0 ? r.value : null,
        ...(r.partition !== undefined ? { partition: r.partition } : {}),
        ...(r.headers ? { headers: r.headers } : {}),
      })),
    });
  } finally {
    await producer.disconnect();
  }
}

/**
 * Writes many records fast, for setting up large partitions: acks from the leader only, not
 * idempotent, sends of about `chunk` records (kept under the broker's 1 MB batch limit), `inFlight`
 * at a time. Records of one call may land in any order among themselves; calls land in call order.
 */
export async function rawProduceBulk(
  brokers: string[],
  topic: string,
  records: Iterable<{
    key: string | null;
    value: Buffer | null;
    partition: number;
    headers?: Record<string, string>;
  }>,
  opts: { chunk?: number; inFlight?: number } = {},
): Promise<number> {
  const producer = rawKafka(brokers).producer({ allowAutoTopicCreation: false });
  await producer.connect();
  const chunk = opts.chunk ?? 4000;
  const sending = new Set<Promise<unknown>>();
  let written = 0;
  const send = (messages: { key: string | null; value: Buffer | null; partition: number }[]) => {
    const p = producer.send({ topic, acks: 1, messages }).finally(() => sending.delete(p));
    sending.add(p);
    written += messages.length;
  };
  try {
    let batch: { key: string | null; value: Buffer | null; partition: number }[] = [];
    for (const r of records) {
      batch.push(r);
      if (batch.length < chunk) continue;
      send(batch);
      batch = [];
      if (sending.size >= (opts.inFlight ?? 4)) await Promise.race(sending);
    }
    if (batch.length > 0) send(batch);
    await Promise.all(sending);
  } finally {
    await producer.disconnect();
  }
  return written;
}
