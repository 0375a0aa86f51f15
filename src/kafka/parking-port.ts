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

  async readAll(partition: number): Promise<FetchedRecord[]> {
    const bounds = (await this.admin.fetchTopicOffsets(this.topic)).find((b) => b.partition === partition);
    if (!bounds) throw new Error(`${this.topic} has no partition ${partition}`);
    return this.range(partition, Number(bounds.low), Number(bounds.high));
  }

  async read(partition: number, offsets: readonly number[]): Promise<FetchedRecord[]> {
    if (offsets.length === 0) return [];
    const wanted = new Set(offsets);
    const records = await this.range(partition, Math.min(...offsets), Math.max(...offsets) + 1);
    return records.filter((r) => wanted.has(Number(r.offset)));
  }

  async write(partition: number, records: readonly OutgoingRecord[]): Promise<number[]> {
    const placements = await sendAcknowledged(
      this.producer,
      [
        {
          topic: this.topic,
          messages: records.map((r) => ({ key: r.key, value: r.value, headers: r.headers, partition })),
        },
      ],
      { counts: this.counts },
    );
    return placements.map((p) => Number(p.offset));
  }
}
