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

interface SendOptions {
  counts?: PartitionCounts | undefined;
  attempts?: number;
  onResend?: (partitions: string[]) => void;
  inTransaction?: boolean;
}

/** One caller's records, each with its partition, in the caller's order. */
interface PlacedCall {
  records: { topic: string; message: Message }[];
  opts: SendOptions;
  resolve: (placements: Placement[]) => void;
  reject: (error: unknown) => void;
}

/**
 * Sends records (acks=all) and returns where each one landed, in input order — but only once
 * every partition written to was acknowledged.
 *
 * kafkajs' `send` can resolve without some partitions: its retry after a failed request keeps the
 * answers of brokers that already replied, so partitions whose leadership moved to such a broker
 * are never sent again, and the call still succeeds (tulios/kafkajs#1303; seen here when a leader
 * is killed mid-run). So every record gets an explicit partition (the Java client's default
 * choice when the caller gave none), and partitions missing from the answer are sent again, up
 * to `attempts` times.
 *
 * One send at a time per producer (outside a transaction): kafkajs' idempotent producer gives a
 * failed request's sequence numbers back before it retries, so a concurrent send of the same
 * producer can take them; when the failed request had been written, the broker then acknowledges
 * the other send's records as duplicates of it (dropped: an acknowledged send lost) and the retry
 * writes the first records again under new numbers (a duplicate) — tulios/kafkajs#1005; the chaos
 * scenario `exactly-once` saw its input producer write payments twice while a new three-node
 * cluster settled. Sends that arrive while one is under way wait and go together in the next
 * request (up to `MERGE_MAX_RECORDS` / `MERGE_MAX_BYTES`), so one request at a time costs no
 * throughput. kafkajs already sends to one broker one request at a time (its broker lock).
 * Inside a transaction (`inTransaction`; its steps are sequential anyway) nothing is sent again:
 * both copies would commit together, so a missing partition throws at once and the caller aborts
 * the transaction (exactly-once rounds, DLQ replays).
 */
export async function sendAcknowledged(
  sender: BatchSender,
  topicMessages: readonly { topic: string; messages: readonly Message[] }[],
  opts: SendOptions = {},
): Promise<Placement[]> {
  const records: PlacedCall['records'] = [];
  for (const { topic, messages } of topicMessages) {
    const count = messages.some((m) => m.partition === undefined)
      ? await (opts.counts ?? missingCounts)(topic)
      : 0;
    for (const message of messages) {
      const partition =
        message.partition ??
        defaultPartitioner(topic, (message.key as string | Buffer | null) ?? null, count);
      records.push({ topic, message: { ...message, partition } });
    }
  }
  return new Promise<Placement[]>((resolve, reject) => {
    const call: PlacedCall = { records, opts, resolve, reject };
    if (opts.inTransaction) void sendCalls(sender, [call]);
    else queueOf(sender).add(call);
  });
}

/** A request holds the waiting sends up to this many records... */
export const MERGE_MAX_RECORDS = 2000;
/** ...or this many bytes of values and keys (a broker refuses a partition's batch over 1 MiB by default). */
export const MERGE_MAX_BYTES = 512 * 1024;

const queues = new WeakMap<BatchSender, SendQueue>();

function queueOf(sender: BatchSender): SendQueue {
  let q = queues.get(sender);
  if (!q) {
    q = new SendQueue(sender);
    queues.set(sender, q);
  }
  return q;
}

/** The sends of one producer, one request at a time; those that wait go together. */
class SendQueue {
  private readonly waiting: PlacedCall[] = [];
  private busy = false;

  constructor(private readonly sender: BatchSender) {}

  add(call: PlacedCall): void {
    this.waiting.push(call);
    if (!this.busy) void this.run();
  }

  private async run(): Promise<void> {
    this.busy = true;
    while (this.waiting.length > 0) {
      const calls = [this.waiting.shift()!];
      let n = calls[0]!.records.length;
      let bytes = sizeOf(calls[0]!);
      while (this.waiting.length > 0) {
        const next = this.waiting[0]!;
        const size = sizeOf(next);
        if (n + next.records.length > MERGE_MAX_RECORDS || bytes + size > MERGE_MAX_BYTES) break;
        calls.push(this.waiting.shift()!);
        n += next.records.length;
        bytes += size;
      }
      // sendCalls settles every call and never throws; should it ever, the calls still fail and
      // the queue goes on (a queue left busy would hold every later send of the producer).
      await sendCalls(this.sender, calls).catch((error: unknown) => {
        for (const c of calls) c.reject(error);
      });
    }
    this.busy = false;
  }
}

function sizeOf(call: PlacedCall): number {
  let bytes = 0;
  for (const { message } of call.records) bytes += lengthOf(message.value) + lengthOf(message.key) + 64;
  return bytes;
}

const lengthOf = (v: unknown) =>
  typeof v === 'string' ? Buffer.byteLength(v) : Buffer.isBuffer(v) ? v.length : 0;

/**
 * Sends the calls' records in one request (per partition in call order), partitions missing from
 * the answer again; settles each call: placed once all its partitions were acknowledged, else
 * rejected. Never throws.
 */
async function sendCalls(sender: BatchSender, calls: readonly PlacedCall[]): Promise<void> {
  const placements = calls.map((c) =>
    c.records.map(({ topic, message }) => ({ topic, partition: message.partition!, offset: '-1' })),
  );
  const pending = new Map<string, { topic: string; messages: Message[]; slots: Placement[] }>();
  calls.forEach((call, c) => {
    call.records.forEach(({ topic, message }, i) => {
      const tp = `${topic}[${message.partition}]`;
      let group = pending.get(tp);
      if (!group) {
        group = { topic, messages: [], slots: [] };
        pending.set(tp, group);
      }
      group.messages.push(message);
      group.slots.push(placements[c]![i]!);
    });
  });
  const attempts = Math.max(...calls.map((c) => (c.opts.inTransaction ? 1 : (c.opts.attempts ?? 5))));
  let failure: unknown;
  try {
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
          slot.offset = String(base + BigInt(i));
        });
        pending.delete(tp);
      }
      if (pending.size === 0) break;
      if (attempt >= attempts) throw new UnacknowledgedSendError([...pending.keys()]);
      const missing = [...pending.keys()];
      for (const f of new Set(calls.map((c) => c.opts.onResend))) f?.(missing);
      await new Promise((r) => setTimeout(r, Math.min(100 * 2 ** attempt, 2000)));
    }
  } catch (error) {
    failure = error;
  }
  calls.forEach((call, c) => {
    const placed = placements[c]!;
    // A call whose every partition was acknowledged is placed, whatever befell the others.
    if (placed.every((p) => p.offset !== '-1')) call.resolve(placed);
    else call.reject(failure ?? new UnacknowledgedSendError([]));
  });
}

function missingCounts(topic: string): Promise<number> {
  return Promise.reject(
    new Error(`sendAcknowledged: a record for ${topic} has no partition and no counts were given`),
  );
}
