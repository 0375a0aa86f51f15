import { createRequire } from 'node:module';
import type { Consumer, KafkaMessage } from 'kafkajs';
import { createKafka, type KafkaConnection } from './client.js';

/** One fetch of one partition (see {@link PartitionReader.fetch}). */
export interface FetchedRange {
  /** Records at and after the offset asked for (transaction markers and aborted records left out). */
  records: KafkaMessage[];
  /**
   * The offset after the last one the fetch covered: past markers, aborted records and record
   * batches that log compaction emptied. Equal to the offset asked for when it covered nothing.
   */
  next: number;
  /** What read-committed readers may see up to (the end of the readable log). */
  lastStable: number;
  /** The high watermark: past it nothing is written yet (below it and past `lastStable`: not decided yet). */
  end: number;
}

/** What the reader uses of kafkajs' cluster object (handed to partition assigners). */
interface FetchCluster {
  addTargetTopic(topic: string): Promise<void>;
  refreshMetadata(): Promise<void>;
  findLeaderForPartitions(topic: string, partitions: number[]): Record<string, number[]>;
  findBroker(args: { nodeId: string }): Promise<FetchBroker>;
}

interface ProtocolRequest {
  request: { apiVersion: number };
  response: { decode(raw: Buffer): Promise<unknown>; parse(decoded: unknown): Promise<FetchResponse> };
  requestTimeout?: number;
}

interface FetchBroker {
  lookupRequest(apiKey: number, definition: unknown): (args: object) => ProtocolRequest;
  connectionPool: { send(request: ProtocolRequest): Promise<FetchResponse> };
  disconnect(): Promise<void>;
}

interface FetchedPartition {
  partition: number;
  errorCode: number;
  highWatermark: string;
  lastStableOffset: string;
  abortedTransactions: { producerId: string; firstOffset: string }[];
  messages: (KafkaMessage & { batchContext?: unknown })[];
  /** The offset after the last record batch decoded whole (empty batches included). */
  batchesEnd: number;
}

interface FetchResponse {
  responses: { topicName: string; partitions: FetchedPartition[] }[];
}

interface KafkajsDecoder {
  offset: number;
  buffer: Buffer;
  readInt8(): number;
  readInt16(): number;
  readInt32(): number;
  readInt64(): { toString(): string };
  readVarInt(): number;
  readVarLong(): unknown;
  readVarIntBytes(): Buffer | null;
  slice(size: number): KafkajsDecoder;
  forward(size: number): void;
  readString(): string;
  readBytes(n: number): Buffer;
  canReadBytes(n: number): boolean;
  readArray<T>(read: (d: KafkajsDecoder) => T): T[];
  readArrayAsync<T>(read: (d: KafkajsDecoder) => Promise<T>): Promise<T[]>;
}

// kafkajs internals (2.2.4, its last release): the fetch request and its record decoding.
const require = createRequire(import.meta.url);
const Decoder = require('kafkajs/src/protocol/decoder') as new (buffer: Buffer) => KafkajsDecoder;
const RecordBatchDecoder = require('kafkajs/src/protocol/recordBatch/v0/decoder') as (
  d: KafkajsDecoder,
) => Promise<{ firstOffset: string; lastOffsetDelta: number; records: FetchedPartition['messages'] }>;
const RecordDecoder = require('kafkajs/src/protocol/recordBatch/record/v0/decoder') as (
  d: KafkajsDecoder,
  batchContext: object,
) => FetchedPartition['messages'][number];
const MessageSetDecoder = require('kafkajs/src/protocol/messageSet/decoder') as (
  d: KafkajsDecoder,
  size: number,
) => Promise<FetchedPartition['messages']>;
const FetchRequests = require('kafkajs/src/protocol/requests/fetch') as unknown;
const FETCH_API_KEY = 1;
/** kafkajs' own batch: filters records below the offset asked for, aborted ones and control records. */
const KafkajsBatch = require('kafkajs/src/consumer/batch') as new (
  topic: string,
  fetchedOffset: string,
  partitionData: FetchedPartition,
) => { messages: KafkaMessage[] };

/** Thrown for a record batch cut short by the fetch's byte limit (the next fetch reads it). */
class PartialBatch extends Error {}

/**
 * A record batch (format 2, uncompressed) whose records are decoded only at offsets `wanted`
 * takes; the others are passed over unread (kafkajs decodes every record, headers included).
 * The batch context is kafkajs' own (recordBatch/v0/decoder.js), so records come out alike.
 */
function decodeBatchPicking(
  d: KafkajsDecoder,
  wanted: (offset: number) => boolean,
): { firstOffset: string; lastOffsetDelta: number; records: FetchedPartition['messages'] } {
  const firstOffset = d.readInt64().toString();
  const length = d.readInt32();
  if (!d.canReadBytes(length)) throw new PartialBatch();
  const b = d.slice(length);
  d.forward(length);
  const partitionLeaderEpoch = b.readInt32();
  const magicByte = b.readInt8();
  b.readInt32(); // crc
  const attributes = b.readInt16();
  const lastOffsetDelta = b.readInt32();
  const firstTimestamp = b.readInt64().toString();
  const maxTimestamp = b.readInt64().toString();
  const producerId = b.readInt64().toString();
  const producerEpoch = b.readInt16();
  const firstSequence = b.readInt32();
  const context = {
    ...{ firstOffset, firstTimestamp, partitionLeaderEpoch, lastOffsetDelta, producerId, producerEpoch },
    ...{ firstSequence, maxTimestamp, magicByte },
    inTransaction: (attributes & 0x10) > 0,
    isControlBatch: (attributes & 0x20) > 0,
    timestampType: (attributes & 0x08) > 0 ? 1 : 0,
  };
  const records: FetchedPartition['messages'] = [];
  const base = Number(firstOffset);
  for (let i = b.readInt32(); i > 0; i--) {
    const bytes = b.readVarIntBytes();
    if (!bytes) continue;
    const peek = new Decoder(bytes);
    peek.readInt8(); // attributes
    peek.readVarLong(); // timestamp delta
    // A control record (a transaction's commit or abort marker) is always kept: kafkajs' filter
    // (Batch, filterAbortedMessages) ends an aborted transaction at its ABORT marker; without it every
    // later record of that producer in the fetch passes for aborted (a fenced holder's aborted write
    // shares the producer id of the writes after it).
    const offset = base + peek.readVarInt();
    if (context.isControlBatch || wanted(offset)) records.push(RecordDecoder(new Decoder(bytes), context));
  }
  return { firstOffset, lastOffsetDelta, records };
}

/**
 * Record set bytes of one partition, keeping where the last whole record batch ended; with
 * `wanted`, records at other offsets of uncompressed batches are not decoded.
 */
async function decodeRecordSet(
  d: KafkajsDecoder,
  wanted?: (offset: number) => boolean,
): Promise<{ messages: FetchedPartition['messages']; end: number }> {
  const size = d.readInt32();
  if (size <= 0 || !d.canReadBytes(size)) return { messages: [], end: -1 };
  const bytes = d.readBytes(size);
  // Byte 16 of a record batch (and of a legacy message set entry) is the magic byte.
  if (bytes.length <= 16 || bytes.readInt8(16) < 2) {
    const messages = await MessageSetDecoder(new Decoder(bytes), size);
    return { messages, end: messages.length ? Number(messages.at(-1)!.offset) + 1 : -1 };
  }
  const batches = new Decoder(bytes);
  const messages: FetchedPartition['messages'] = [];
  let end = -1;
  // 61 bytes: a record batch's header; a batch cut short by maxBytes is left for the next fetch.
  while (batches.canReadBytes(61)) {
    try {
      // Bytes 21–22 of a batch: its attributes, the low three bits its compression.
      const compressed = (batches.buffer.readInt16BE(batches.offset + 21) & 0x07) !== 0;
      const batch =
        wanted && !compressed ? decodeBatchPicking(batches, wanted) : await RecordBatchDecoder(batches);
      for (const r of batch.records) messages.push(r);
      end = Number(batch.firstOffset) + batch.lastOffsetDelta + 1;
    } catch (error) {
      if (error instanceof PartialBatch || (error as Error).name === 'KafkaJSPartialMessageError') break;
      throw error;
    }
  }
  return { messages, end };
}

/** kafkajs' fetch response decoding (versions 4–11), with {@link decodeRecordSet} for the records. */
function fetchDecoder(version: number, wanted?: (offset: number) => boolean) {
  const partition = async (d: KafkajsDecoder): Promise<FetchedPartition> => {
    const p = d.readInt32();
    const errorCode = d.readInt16();
    const highWatermark = d.readInt64().toString();
    const lastStableOffset = d.readInt64().toString();
    if (version >= 5) d.readInt64(); // log start offset
    const abortedTransactions = d.readArray((a) => ({
      producerId: a.readInt64().toString(),
      firstOffset: a.readInt64().toString(),
    }));
    if (version >= 11) d.readInt32(); // preferred read replica
    const { messages, end } = await decodeRecordSet(d, wanted);
    return {
      ...{ partition: p, errorCode, highWatermark, lastStableOffset, abortedTransactions },
      ...{ messages, batchesEnd: end },
    };
  };
  return async (raw: Buffer): Promise<FetchResponse> => {
    const d = new Decoder(raw);
    d.readInt32(); // throttle time
    if (version >= 7) {
      d.readInt16(); // error code (fetch sessions, unused here)
      d.readInt32(); // session id
    }
    const responses = await d.readArrayAsync(async (t) => ({
      topicName: t.readString(),
      partitions: await t.readArrayAsync(partition),
    }));
    return { responses };
  };
}

/**
 * Reads partitions straight from their leaders: fetch requests (read committed, as a consumer
 * reads) without a consumer group, so nothing waits for a coordinator or a join and no group is
 * left behind. It keeps one connection to the cluster until `close()` — kafkajs' cluster object,
 * which a consumer hands to its partition assigners on connect (this consumer never joins) —
 * so a worker's parking reads cost no client setup each.
 *
 * The fetch answer is decoded here, with kafkajs' own record decoding, to learn where each
 * record batch ends: log compaction can leave a batch empty (the last batch of a producer is kept
 * for its sequence numbers), kafkajs drops such batches while decoding, and a reader whose next
 * offset is one that ends a segment then gets nothing back, forever (tulios/kafkajs#1072). The
 * Java consumer moves on by the batch's last offset; so does this reader.
 */
export class PartitionReader {
  private connecting: Promise<FetchCluster> | undefined;
  private consumer: Consumer | undefined;
  private readonly topics = new Set<string>();

  constructor(private readonly conn: KafkaConnection) {}

  private cluster(): Promise<FetchCluster> {
    this.connecting ??= (async () => {
      let cluster: FetchCluster | undefined;
      const consumer = createKafka(this.conn).consumer({
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
      this.consumer = consumer;
      await consumer.connect();
      if (!cluster) throw new Error('kafkajs did not hand its cluster to the partition assigner');
      return cluster;
    })().catch((error: unknown) => {
      this.connecting = undefined;
      void this.consumer?.disconnect().catch(() => undefined);
      throw error;
    });
    return this.connecting;
  }

  /**
   * One fetch of `partition` from `offset`, up to about `maxBytes` (at least one whole record
   * batch). With `wanted`, only records at offsets it takes are decoded and returned (a read by
   * offset need not decode the batches' other records). A failure (a leader moved, a broker down)
   * refreshes the metadata and rejects: the caller asks again.
   */
  async fetch(
    topic: string,
    partition: number,
    offset: number,
    maxBytes: number,
    wanted?: (offset: number) => boolean,
  ): Promise<FetchedRange> {
    const c = await this.cluster();
    if (!this.topics.has(topic)) {
      await c.addTargetTopic(topic);
      this.topics.add(topic);
    }
    try {
      const [nodeId] = Object.keys(c.findLeaderForPartitions(topic, [partition]));
      if (nodeId === undefined) throw new Error(`${topic}[${partition}] has no leader now`);
      const broker = await c.findBroker({ nodeId });
      const build = broker.lookupRequest(FETCH_API_KEY, FetchRequests);
      const request = build({
        replicaId: -1,
        isolationLevel: 1,
        maxWaitTime: 0,
        minBytes: 1,
        maxBytes,
        topics: [{ topic, partitions: [{ partition, fetchOffset: String(offset), maxBytes }] }],
        rackId: '',
      });
      const version = request.request.apiVersion;
      if (version < 4)
        throw new Error(`the broker answers fetch version ${version} only (4 or later needed)`);
      const decode = fetchDecoder(version, wanted);
      const res = await broker.connectionPool
        .send({ ...request, response: { decode, parse: request.response.parse } })
        .catch(async (error: unknown) => {
          // As kafkajs' own send does: a closed connection is opened again on the next request.
          if ((error as Error).name === 'KafkaJSConnectionClosedError') await broker.disconnect();
          throw error;
        });
      const data = res.responses.flatMap((r) => r.partitions).find((p) => p.partition === partition);
      if (!data) return { records: [], next: offset, lastStable: offset, end: offset };
      const records = new KafkajsBatch(topic, String(offset), data).messages;
      return {
        ...{ records, next: Math.max(offset, data.batchesEnd) },
        ...{ lastStable: Number(data.lastStableOffset), end: Number(data.highWatermark) },
      };
    } catch (error) {
      await c.refreshMetadata().catch(() => undefined);
      throw error;
    }
  }

  async close(): Promise<void> {
    const connecting = this.connecting;
    this.connecting = undefined;
    await connecting?.catch(() => undefined);
    await this.consumer?.disconnect().catch(() => undefined);
  }
}
