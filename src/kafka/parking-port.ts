import type { Kafka } from 'kafkajs';
import type { Logger } from '../observability/logger.js';
import type { FetchedRecord, OutgoingRecord, ParkingPort } from '../ports.js';
import type { Admin, KafkaConnection, KafkaMessage, Producer } from './client.js';
import { PartitionReader } from './partition-reader.js';
import { type PartitionCounts, partitionCounts, sendAcknowledged } from './send.js';
import { KeyedSerial, takeTransactionalId } from './transaction.js';

function fetched(m: KafkaMessage): FetchedRecord {
  return { offset: m.offset, key: m.key ?? null, value: m.value ?? null, headers: m.headers };
}

/** A page of a parking partition read whole (one fetch). */
const PAGE_BYTES = 1024 * 1024;
/**
 * A fetch for parked jobs by offset: they are often far apart, so each fetch reads little more than
 * the record batch holding the next one (a broker always answers with that batch whole).
 */
const PICK_BYTES = 64 * 1024;
/** The most one fetch by offset asks for when many close offsets are wanted (a read-back of deferred records). */
const PICK_BYTES_MAX = 1024 * 1024;

/** The transactional id under which one parking partition is written (one writer at a time). */
export function parkingTransactionalIdOf(groupId: string, topic: string, partition: number): string {
  return `strand-park.${groupId}.${topic}.${partition}`;
}

/** A parking write refused or not sent: this worker no longer holds the partition's transactional id. */
export class ParkingFencedError extends Error {
  constructor(
    readonly partition: number,
    cause?: unknown,
  ) {
    super(
      `the parking partition ${partition} is not held by this worker (fenced by a later owner, or not taken)`,
      {
        cause,
      },
    );
    this.name = 'ParkingFencedError';
  }
}

/** Kafka's answers to a producer whose transactional id was taken by a later one. */
function isFenced(error: unknown): boolean {
  for (
    let e = error as { type?: unknown; cause?: unknown; name?: unknown } | undefined, n = 0;
    e && n < 5;
    n++
  ) {
    if (
      e.type === 'PRODUCER_FENCED' ||
      e.type === 'INVALID_PRODUCER_EPOCH' ||
      e.name === 'ParkingFencedError'
    )
      return true;
    e = e.cause as typeof e;
  }
  return false;
}

export interface ParkingFencing {
  kafka: Kafka;
  groupId: string;
  logger?: Logger;
  /** The coordinator aborts a write's transaction open longer than this. @defaultValue 60000 */
  transactionTimeoutMs?: number;
}

/**
 * The parking topic on kafkajs: read straight from the partition leaders through one long-lived
 * reader per worker (partition-reader.ts: no consumer group, no client per read), read_committed.
 *
 * Writes are fenced as Kafka fences (with `fencing`): each parking partition has its own
 * transactional id (`parkingTransactionalIdOf`); the owner of job-topic partition p takes p's id
 * (`fence`: InitProducerId) before it reads parking partition p, which aborts an earlier holder's
 * open write and refuses its next one (PRODUCER_FENCED / INVALID_PRODUCER_EPOCH). Every write is one
 * short transaction on the partition's producer (begin, send, commit) and resolves after the
 * commit; a refused one rejects with `ParkingFencedError` and the id is let go (`holds` is false:
 * only a new `fence`, by a new ownership, takes it again). Without `fencing` (a reader of records
 * only), writes are plain acknowledged sends on `producer`. `close()` ends the reader and producers.
 */
export class KafkaParkingPort implements ParkingPort {
  private readonly reader: PartitionReader;
  /** The transactional producer of each parking partition this worker holds. */
  private readonly holders = new Map<number, Producer>();
  /** Steps of one partition (fence, write, release) run one after another. */
  private readonly serial = new KeyedSerial<number>();
  /** What an offset of the topic takes in a fetch, as the last fetch cut by its limit said. */
  private bytesPerOffset = 512;

  constructor(
    conn: KafkaConnection,
    private readonly admin: Admin,
    private readonly producer: Producer,
    private readonly topic: string,
    private readonly counts: PartitionCounts = partitionCounts(admin),
    private readonly fencing?: ParkingFencing,
  ) {
    this.reader = new PartitionReader(conn);
  }

  /**
   * Takes the partition's transactional id (InitProducerId), now: an earlier holder's open write is
   * aborted and its next refused. Resolves once taken; before reading the partition as its owner.
   */
  fence(partition: number): Promise<void> {
    const fencing = this.fencing;
    if (!fencing) return Promise.resolve();
    return this.serial.run(partition, async () => {
      await this.let(partition);
      const producer = await takeTransactionalId(fencing.kafka, {
        transactionalId: parkingTransactionalIdOf(fencing.groupId, this.topic, partition),
        transactionTimeoutMs: fencing.transactionTimeoutMs,
        // A transaction begun right after the last one committed is answered CONCURRENT_TRANSACTIONS
        // while the coordinator writes that one's markers (a few ms): asked again soon, not in 100 ms.
        retry: { retries: 10, initialRetryTime: 5, maxRetryTime: 2000 },
      });
      this.holders.set(partition, producer);
    });
  }

  /** Whether this worker still holds the partition's transactional id (taken, no write refused since). */
  holds(partition: number): boolean {
    return !this.fencing || this.holders.has(partition);
  }

  /** Lets the partition's transactional id go (the job-topic partition left this worker). */
  release(partition: number): Promise<void> {
    if (!this.fencing) return Promise.resolve();
    return this.serial.run(partition, () => this.let(partition));
  }

  private async let(partition: number): Promise<void> {
    const producer = this.holders.get(partition);
    this.holders.delete(partition);
    await producer
      ?.disconnect()
      .catch((error: unknown) =>
        this.fencing?.logger?.warn({ err: error, partition }, 'could not disconnect a parking producer'),
      );
  }

  private async bounds(partition: number): Promise<{ low: number; high: number }> {
    const b = (await this.admin.fetchTopicOffsets(this.topic)).find((o) => o.partition === partition);
    if (!b) throw new Error(`${this.topic} has no partition ${partition}`);
    return { low: Number(b.low), high: Number(b.high) };
  }

  /** Page by page, no cap: a page is handed over before the next is fetched, so memory holds one. */
  async scan(
    partition: number,
    from: number,
    onPage: (records: readonly FetchedRecord[], next: number) => void,
  ): Promise<number> {
    const { low, high } = await this.bounds(partition);
    let at = Math.max(from, low);
    while (at < high) {
      const got = await this.reader.fetch(this.topic, partition, at, PAGE_BYTES);
      const next = Math.min(got.next, high);
      // Never past a record not handed over: a fetch that covered nothing fails (asked again).
      if (next <= at)
        throw new Error(`${this.topic}[${partition}] answered nothing at offset ${at} (end ${high})`);
      onPage(got.records.filter((m) => Number(m.offset) < high).map(fetched), next);
      at = next;
    }
    return at;
  }

  async endOffset(partition: number): Promise<number> {
    return (await this.bounds(partition)).high;
  }

  /** By exact offsets: each fetch starts at the next offset wanted, so records far from all of them are never read. */
  async read(partition: number, offsets: readonly number[]): Promise<FetchedRecord[]> {
    const wanted = [...new Set(offsets)].sort((a, b) => a - b);
    const out: FetchedRecord[] = [];
    const picked = new Set(wanted);
    let i = 0;
    let unstable = 0;
    while (i < wanted.length) {
      const at = wanted[i]!;
      // Enough for the close offsets wanted from here on (gaps of at most 16), by the bytes an
      // offset took so far: a read-back of hundreds of deferred records in one fetch, not a
      // 64 KiB fetch per few dozen; offsets far apart still get a small fetch each.
      let last = i;
      while (last + 1 < wanted.length && wanted[last + 1]! - wanted[last]! <= 16) last++;
      const span = wanted[last]! - at + 1;
      const bytes = Math.min(PICK_BYTES_MAX, Math.max(PICK_BYTES, Math.ceil(span * this.bytesPerOffset)));
      const got = await this.reader.fetch(this.topic, partition, at, bytes, (o) => picked.has(o));
      // A fetch cut by its byte limit tells what an offset takes (a whole first batch can be larger).
      if (got.next > at && got.next < got.end) this.bytesPerOffset = bytes / (got.next - at);
      for (const m of got.records) {
        const offset = Number(m.offset);
        // Offsets below a returned record that it skipped were compacted away.
        while (i < wanted.length && wanted[i]! < offset) i++;
        if (wanted[i] === offset) {
          out.push(fetched(m));
          i++;
        }
      }
      while (i < wanted.length && wanted[i]! < got.next) i++;
      if (got.next > at) continue;
      // At the end of the partition: the rest is not there. Short of it, a fetch that covered
      // nothing must not pass for records compacted away (a release would skip them): ask again.
      // Below the high watermark but not stable yet: a committed write whose markers are still
      // being written (the coordinator answers the commit first), or an open one: ask again.
      if (at >= got.lastStable && at >= got.end) break;
      if (at >= got.lastStable && unstable++ < 100) {
        await new Promise((r) => setTimeout(r, 10));
        continue;
      }
      throw new Error(`${this.topic}[${partition}] answered nothing at offset ${at} (end ${got.lastStable})`);
    }
    return out;
  }

  /** Ends the reader's connections and lets every transactional id go. */
  async close(): Promise<void> {
    await Promise.all([this.reader.close(), ...[...this.holders.keys()].map((p) => this.release(p))]);
  }

  /**
   * Writes made within 2 ms of each other (or 500 records) go together: one transaction per
   * partition (fenced), else one produce request; each caller gets its records' offsets once its
   * partition's transaction committed (every partition of the request acknowledged).
   */
  write(partition: number, records: readonly OutgoingRecord[]): Promise<number[]> {
    return new Promise((resolve, reject) => {
      this.pending.push({ partition, records, resolve, reject });
      this.queued += records.length;
      if (this.queued >= 500) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), 2);
    });
  }

  private pending: {
    partition: number;
    records: readonly OutgoingRecord[];
    resolve: (offsets: number[]) => void;
    reject: (error: unknown) => void;
  }[] = [];
  private queued = 0;
  private timer: NodeJS.Timeout | undefined;

  private flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const batch = this.pending;
    this.pending = [];
    this.queued = 0;
    if (this.fencing) {
      const byPartition = new Map<number, typeof batch>();
      for (const b of batch) byPartition.set(b.partition, [...(byPartition.get(b.partition) ?? []), b]);
      for (const [partition, writes] of byPartition) this.transact(partition, writes);
      return;
    }
    const messages = batch.flatMap(({ partition, records }) =>
      records.map((r) => ({ key: r.key, value: r.value, headers: r.headers, partition })),
    );
    sendAcknowledged(this.producer, [{ topic: this.topic, messages }], { counts: this.counts }).then(
      ...settles(batch),
    );
  }

  /** One partition's writes in one transaction of its producer; each resolves after the commit. */
  private transact(partition: number, batch: KafkaParkingPort['pending']): void {
    const messages = batch.flatMap(({ records }) =>
      records.map((r) => ({ key: r.key, value: r.value, headers: r.headers, partition })),
    );
    this.serial
      .run(partition, async () => {
        const producer = this.holders.get(partition);
        if (!producer) throw new ParkingFencedError(partition);
        let tx: Awaited<ReturnType<Producer['transaction']>> | undefined;
        let committing = false;
        try {
          tx = await producer.transaction();
          const placements = await sendAcknowledged(tx, [{ topic: this.topic, messages }], {
            counts: this.counts,
            inTransaction: true,
          });
          committing = true;
          await tx.commit();
          return placements;
        } catch (error) {
          // kafkajs cannot leave a failed commit's state, nor a fenced producer, nor one that could
          // not begin: the id is let go, and only a new ownership takes it again (taking it here
          // could fence a newer owner). A send that failed inside the transaction is aborted.
          const aborted = (t: NonNullable<typeof tx>) =>
            t.abort().then(
              () => true,
              () => false,
            );
          if (!tx || committing || isFenced(error) || !(await aborted(tx))) await this.let(partition);
          throw isFenced(error) ? new ParkingFencedError(partition, error) : error;
        }
      })
      .then(...settles(batch));
  }
}

/** Resolves each write of a batch with its records' offsets (placed in batch order), or rejects them all. */
function settles(batch: KafkaParkingPort['pending']) {
  return [
    (placements: readonly { offset: string }[]) => {
      let i = 0;
      for (const b of batch) {
        b.resolve(placements.slice(i, i + b.records.length).map((p) => Number(p.offset)));
        i += b.records.length;
      }
    },
    (error: unknown) => {
      for (const b of batch) b.reject(error);
    },
  ] as const;
}
