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
  /**
   * On a retried job waiting in the delay buckets (a `RetryLaterError` longer than the last tier):
   * the retry tier it goes to when due, instead of the job topic.
   */
  retryTier: 'strand-retry-tier',
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
  /** On a retry-tier record whose key is parked behind it (strict order): its end releases the key. */
  parksKey: 'strand-parks-key',
  /** On a release record in the job topic: the job id of the parked key's head that ended. */
  release: 'strand-release',
  /** On a release record: how the head ended (`completed` or `dead`). */
  releaseOutcome: 'strand-release-outcome',
  /** On a parked job (parking topic): its key (the record's own key is `f:<offset>`). */
  parkedKey: 'strand-parked-key',
  /** On a parked job: the job id of the head it waits behind. */
  parkedBehind: 'strand-parked-behind',
  /** On a parking-topic record: which ownership of its partition wrote it (a random token). */
  parkingWriter: 'strand-parking-writer',
  /** On a `key-dead` dead letter: the job id of the dead job that caused it. */
  deadCause: 'strand-dead-cause',
  replayCount: 'strand-replay-count',
  decodeReason: 'strand-decode-reason',
  traceparent: 'traceparent',
  tracestate: 'tracestate',
} as const;

/** A header's first value as kafkajs gives it (a Buffer, a string), or undefined. */
function firstValue(headers: Record<string, unknown> | undefined, name: string): unknown {
  const raw = headers?.[name];
  const one = Array.isArray(raw) ? raw[0] : raw;
  return one === null ? undefined : one;
}

/** Reads a header as a string (kafkajs gives Buffers, arrays or undefined). */
export function headerString(headers: Record<string, unknown> | undefined, name: string): string | undefined {
  const one = firstValue(headers, name);
  if (one === undefined) return undefined;
  return Buffer.isBuffer(one) ? one.toString('utf8') : String(one);
}

/**
 * Reads a header as `Number(headerString(...))` does, without making a string when it is plain ASCII
 * digits (the attempt and time headers of every job); undefined when absent or empty.
 */
export function headerNumber(headers: Record<string, unknown> | undefined, name: string): number | undefined {
  const one = firstValue(headers, name);
  if (one === undefined) return undefined;
  if (!Buffer.isBuffer(one) || one.length > 15) {
    const text = headerString(headers, name)!;
    return text === '' ? undefined : Number(text);
  }
  if (one.length === 0) return undefined;
  let n = 0;
  for (let i = 0; i < one.length; i++) {
    const digit = one[i]! - 48;
    if (digit < 0 || digit > 9) return Number(one.toString('utf8'));
    n = n * 10 + digit;
  }
  return n;
}
