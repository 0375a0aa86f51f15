import type { FetchedRecord, OutgoingRecord, ParkingPort } from '../ports.js';
import type { Admin, KafkaConnection, KafkaMessage, Producer } from './client.js';
import { PartitionReader } from './partition-reader.js';
import { type PartitionCounts, partitionCounts, sendAcknowledged } from './send.js';

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

/**
 * The parking topic on kafkajs: read straight from the partition leaders through one long-lived
 * reader per worker (partition-reader.ts: no consumer group, no client per read), written with
 * acknowledged sends to an explicit partition. `close()` ends the reader.
 */
export class KafkaParkingPort implements ParkingPort {
  private readonly reader: PartitionReader;

  constructor(
    conn: KafkaConnection,
    private readonly admin: Admin,
    private readonly producer: Producer,
    private readonly topic: string,
    private readonly counts: PartitionCounts = partitionCounts(admin),
  ) {
    this.reader = new PartitionReader(conn);
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
    while (i < wanted.length) {
      const at = wanted[i]!;
      const got = await this.reader.fetch(this.topic, partition, at, PICK_BYTES, (o) => picked.has(o));
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
      if (at >= got.lastStable) break;
      throw new Error(`${this.topic}[${partition}] answered nothing at offset ${at} (end ${got.lastStable})`);
    }
    return out;
  }

  /** Ends the reader's connections. */
  close(): Promise<void> {
    return this.reader.close();
  }

  /**
   * Writes made within 2 ms of each other (or 500 records) go in one produce request; each caller
   * gets its records' offsets once every partition of the request acknowledged.
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
    const messages = batch.flatMap(({ partition, records }) =>
      records.map((r) => ({ key: r.key, value: r.value, headers: r.headers, partition })),
    );
    sendAcknowledged(this.producer, [{ topic: this.topic, messages }], { counts: this.counts }).then(
      (placements) => {
        let i = 0;
        for (const b of batch) {
          b.resolve(placements.slice(i, i + b.records.length).map((p) => Number(p.offset)));
          i += b.records.length;
        }
      },
      (error: unknown) => {
        for (const b of batch) b.reject(error);
      },
    );
  }
}
