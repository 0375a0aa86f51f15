import type { FetchedRecord, OutgoingRecord, ParkingPort } from '../ports.js';
import { type BrowsedRecord, readRanges } from './browse.js';
import type { Admin, KafkaConnection, Producer } from './client.js';
import { type PartitionCounts, partitionCounts, sendAcknowledged } from './send.js';

function fetched(r: BrowsedRecord): FetchedRecord {
  const m = r.message;
  return { offset: m.offset, key: m.key ?? null, value: m.value ?? null, headers: m.headers };
}

/**
 * The parking topic on kafkajs: read straight from the partition leaders (no consumer group,
 * browse.ts), written with acknowledged sends to an explicit partition.
 */
export class KafkaParkingPort implements ParkingPort {
  constructor(
    private readonly conn: KafkaConnection,
    private readonly admin: Admin,
    private readonly producer: Producer,
    private readonly topic: string,
    private readonly counts: PartitionCounts = partitionCounts(admin),
  ) {}

  /** `[from, to)` of one partition, whole: a read cut short (timeout) fails, so nothing is missed. */
  private async range(partition: number, from: number, to: number): Promise<FetchedRecord[]> {
    if (to <= from) return [];
    const progress = new Map<number, number>();
    const records = await readRanges(this.conn, this.topic, [{ partition, from, to }], {
      timeoutMs: 60_000,
      progress,
    });
    if ((progress.get(partition) ?? from) < to)
      throw new Error(`${this.topic}[${partition}] read only up to ${progress.get(partition)} of ${to}`);
    return records.map(fetched);
  }

  private async bounds(partition: number): Promise<{ low: number; high: number }> {
    const b = (await this.admin.fetchTopicOffsets(this.topic)).find((o) => o.partition === partition);
    if (!b) throw new Error(`${this.topic} has no partition ${partition}`);
    return { low: Number(b.low), high: Number(b.high) };
  }

  async readAll(partition: number): Promise<FetchedRecord[]> {
    const { low, high } = await this.bounds(partition);
    return this.range(partition, low, high);
  }

  async endOffset(partition: number): Promise<number> {
    return (await this.bounds(partition)).high;
  }

  async read(partition: number, offsets: readonly number[]): Promise<FetchedRecord[]> {
    if (offsets.length === 0) return [];
    const wanted = new Set(offsets);
    const records = await this.range(partition, Math.min(...offsets), Math.max(...offsets) + 1);
    return records.filter((r) => wanted.has(Number(r.offset)));
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
