/** Record header names (docs/architecture.md, "Records and headers"). */
export const HEADERS = {
  jobId: 'strand-job-id',
  enqueuedAt: 'strand-enqueued-at',
  attempt: 'strand-attempt',
  /** How many times the job asked to run later (`RetryLaterError`); capped by `retry.maxRetryLater`. */
  retryLater: 'strand-retry-later',
  /** When the job may start: a retry tier's due time, or a delayed job's (`delay` / `runAt`). */
  dueAt: 'strand-due-at',
  /** Until when a record in a delay bucket stays there (its write time + the bucket's length). */
  holdUntil: 'strand-hold-until',
  originTopic: 'strand-origin-topic',
  originPartition: 'strand-origin-partition',
  originOffset: 'strand-origin-offset',
  errorClass: 'strand-error-class',
  errorMessage: 'strand-error-message',
  errorStack: 'strand-error-stack',
  failedAt: 'strand-failed-at',
  /** Why the job was dead-lettered: non-retriable, attempts-exhausted, retry-later-exhausted, undecodable. */
  deadReason: 'strand-dead-reason',
  group: 'strand-group',
  replayCount: 'strand-replay-count',
  decodeReason: 'strand-decode-reason',
  traceparent: 'traceparent',
  tracestate: 'tracestate',
} as const;

/** Reads a header as a string (kafkajs gives Buffers, arrays or undefined). */
export function headerString(headers: Record<string, unknown> | undefined, name: string): string | undefined {
  const raw = headers?.[name];
  const one = Array.isArray(raw) ? raw[0] : raw;
  if (one === undefined || one === null) return undefined;
  return Buffer.isBuffer(one) ? one.toString('utf8') : String(one);
}
