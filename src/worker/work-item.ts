import type { RoutedRecord } from '../failure/router.js';
import { HEADERS, headerString } from '../headers.js';
import type { Schedulable } from './key-scheduler.js';
import type { PartitionTracker } from './partition-tracker.js';
import type { FetchedRecord } from '../ports.js';

/** An accepted record on its way to an outcome. */
export interface WorkItem extends Schedulable, RoutedRecord {
  /** Headers as strings (job-facing). */
  readonly headers: Record<string, string>;
  readonly size: number;
  /** `strand-attempt` of this delivery (1 when absent). */
  readonly attempt: number;
  /** 0 for the job topic, n for retry tier n. */
  readonly tier: number;
  readonly tracker: PartitionTracker;
  readonly acceptedAt: number;
  readonly jobId: string;
}

export const tpKey = (topic: string, partition: number) => `${topic}:${partition}`;

export function toWorkItem(
  topic: string,
  partition: number,
  message: FetchedRecord,
  tier: number,
  tracker: PartitionTracker,
  seq: number,
  acceptedAt: number,
): WorkItem {
  const headers: Record<string, string> = {};
  for (const name of Object.keys(message.headers ?? {})) {
    const value = headerString(message.headers, name);
    if (value !== undefined) headers[name] = value;
  }
  const attempt = Number(headers[HEADERS.attempt] ?? '1');
  const key = message.key ? message.key.toString('utf8') : null;
  // A record without our header (another producer) gets a stable id from where it was first consumed.
  const jobId =
    headers[HEADERS.jobId] ??
    `${headers[HEADERS.originTopic] ?? topic}:${headers[HEADERS.originPartition] ?? partition}:${headers[HEADERS.originOffset] ?? message.offset}`;
  return {
    tp: tpKey(topic, partition),
    key,
    seq,
    topic,
    partition,
    offset: message.offset,
    value: message.value,
    headers,
    rawHeaders: message.headers,
    size: (message.value?.length ?? 0) + (message.key?.length ?? 0) + 64,
    attempt: Number.isInteger(attempt) && attempt > 0 ? attempt : 1,
    tier,
    tracker,
    acceptedAt,
    jobId,
  };
}
