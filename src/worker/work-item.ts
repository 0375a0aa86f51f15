import type { RoutedRecord } from '../failure/router.js';
import { HEADERS, headerNumber, headerString } from '../headers.js';
import type { FetchedRecord, RecordHeaders, TopicRecords } from '../ports.js';
import type { JobSlot } from './dispatcher.js';
import type { Job } from './job.js';
import type { Schedulable } from './key-scheduler.js';
import type { PartitionTracker } from './partition-tracker.js';

export const tpKey = (topic: string, partition: number) => `${topic}:${partition}`;

/**
 * An accepted record on its way to an outcome. Only the headers the worker needs on every job
 * (job id, attempt) are read at acceptance; the job-facing string map is made on first use.
 */
export class WorkItem implements Schedulable, RoutedRecord {
  readonly tp: string;
  readonly key: string | null;
  readonly offset: string;
  readonly value: Buffer | null;
  /** Headers as received (republished unchanged to tiers and the DLQ). */
  readonly rawHeaders: RecordHeaders | undefined;
  readonly size: number;
  /** `strand-attempt` of this delivery (1 when absent). */
  readonly attempt: number;
  readonly jobId: string;
  lane: string | undefined;
  /** The slot of its start (shared by the jobs of a batch), set by the dispatcher. */
  slot: JobSlot | undefined;
  /** How its run ended (set by the executor when it reached an outcome). */
  outcome: 'completed' | 'duplicate' | 'tier' | 'dlq' | undefined;
  /**
   * Where its tier or DLQ record was acknowledged, also when the partition left before that counted
   * as its outcome (a release of the next ownership in this worker knows a dead-lettered job's key is dead).
   */
  routed: 'tier' | 'dlq' | undefined;
  /** A job released from parking (strict key order), run by its key's release record. */
  released = false;
  /** A batch's job that started over after a fault: it runs alone (its batch's call went on without it). */
  solo = false;
  /**
   * Exactly once: what this job writes (its completed attempt's follow-ups, its tier or DLQ
   * record), published with the commit of its offset in its partition's next round.
   */
  writes: TopicRecords[] | undefined;
  /** Exactly once: told whether its round committed (the idempotency done marker waits for it). */
  onRound: ((committed: boolean) => void) | undefined;
  /** Its key's next job may start already (dispatcher `releaseLane`). */
  laneFreed = false;
  /** Its tenant (the `tenant` option, fairness/); undefined without one. */
  tenant: string | undefined;
  /** Why its tenant could not be told (the job goes to the DLQ, reason `bad-tenant`). */
  tenantError: string | undefined;
  /** Its data, when the intake decoded it to tell its tenant (not decoded twice). */
  decoded: { data: unknown } | undefined;
  private parsed: Record<string, string> | undefined;

  constructor(
    readonly topic: string,
    readonly partition: number,
    record: FetchedRecord,
    /** 0 for the job topic, n for retry tier n, -1 for a delay bucket. */
    readonly tier: number,
    readonly tracker: PartitionTracker,
    readonly seq: number,
    readonly acceptedAt: number,
  ) {
    this.tp =
      tracker.topic === topic && tracker.partition === partition ? tracker.tp : tpKey(topic, partition);
    this.key = record.key ? record.key.toString('utf8') : null;
    this.offset = record.offset;
    this.value = record.value;
    this.rawHeaders = record.headers;
    this.size = WorkItem.sizeOf(record);
    const raw = record.headers;
    const attempt = raw ? (headerNumber(raw, HEADERS.attempt) ?? 1) : 1;
    this.attempt = Number.isInteger(attempt) && attempt > 0 ? attempt : 1;
    // A record without our header (another producer) gets a stable id from where it was first consumed.
    this.jobId =
      (raw && headerString(raw, HEADERS.jobId)) ??
      `${(raw && headerString(raw, HEADERS.originTopic)) ?? topic}:${(raw && headerString(raw, HEADERS.originPartition)) ?? partition}:${(raw && headerString(raw, HEADERS.originOffset)) ?? record.offset}`;
  }

  /** What a record counts against `maxBufferedBytes`. */
  static sizeOf(record: FetchedRecord): number {
    return (record.value?.length ?? 0) + (record.key?.length ?? 0) + 64;
  }

  /** Headers as strings (job-facing). */
  get headers(): Record<string, string> {
    if (this.parsed) return this.parsed;
    const headers: Record<string, string> = {};
    const raw = this.rawHeaders;
    if (raw) {
      for (const name of Object.keys(raw)) {
        const value = headerString(raw, name);
        if (value !== undefined) headers[name] = value;
      }
    }
    this.parsed = headers;
    return headers;
  }
}

/**
 * A job as its handler sees it. A class: an object literal with a getter is made on V8's slow path,
 * a measurable cost per job. Headers are parsed only if read; `toJSON` includes them (a logged job
 * shows what it showed as a plain object).
 */
export class JobView implements Job<unknown> {
  readonly #item: WorkItem;
  readonly id: string;
  readonly key: string | null;
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;

  constructor(
    item: WorkItem,
    readonly data: unknown,
    readonly attempt: number,
    readonly enqueuedAt: number | undefined,
  ) {
    this.#item = item;
    this.id = item.jobId;
    this.key = item.key;
    this.topic = item.topic;
    this.partition = item.partition;
    this.offset = item.offset;
  }

  get headers(): Record<string, string> {
    return this.#item.headers;
  }

  toJSON(): Record<string, unknown> {
    const { id, key, data, attempt, headers, topic, partition, offset, enqueuedAt } = this;
    return { id, key, data, attempt, headers, topic, partition, offset, enqueuedAt };
  }
}

/** A tier or DLQ send of `item`'s outcome, noting where it was acknowledged (`routed`). */
export async function routing<T extends { kind: 'tier' | 'dlq' }>(
  item: WorkItem,
  sent: Promise<T>,
): Promise<T> {
  const route = await sent;
  item.routed = route.kind;
  return route;
}
