/**
 * Delayed jobs: a hierarchical timing wheel made of Kafka topics (docs/architecture.md, "Delayed
 * jobs"). A job topic `payments` with delays has one topic per bucket, `payments.delay.<length>`:
 * a record written to the bucket of length D is held until it is D old, so within a partition of
 * one bucket the hold times only grow and a paused partition never holds a sooner record behind a
 * later one. A record whose hold ended moves to the largest bucket not longer than its remaining
 * delay; the `0s` bucket is read at once and its records (due within the smallest bucket's length)
 * wait in memory until due, then go to the job topic as ordinary jobs.
 */

/** Bucket lengths created by `strand topics create <topic> --delays` (besides the 0 s bucket). */
export const DEFAULT_DELAY_BUCKETS_MS: readonly number[] = [
  1_000, 5_000, 30_000, 120_000, 600_000, 3_600_000, 21_600_000, 86_400_000,
];

/**
 * How much longer than its remaining delay a record may wait in a bucket (at most a tenth of the
 * bucket's length): without it a job due in exactly 24 h, a few ms older when its bucket is
 * chosen, would take the 6 h bucket and hop ~30 times.
 */
export const DELAY_HOP_TOLERANCE_MS = 100;

/** The overshoot allowed for a bucket of `ms`. */
export function overshoot(ms: number): number {
  return Math.min(DELAY_HOP_TOLERANCE_MS, Math.floor(ms / 10));
}

const UNITS: readonly [string, number][] = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1_000],
];

/** `1d`, `6h`, `30s`, `250ms`: the exact length, in the largest unit that divides it. */
export function delayLabel(ms: number): string {
  if (ms === 0) return '0s';
  for (const [unit, size] of UNITS) if (ms % size === 0) return `${ms / size}${unit}`;
  return `${ms}ms`;
}

const LABEL = /^(\d+)(ms|s|m|h|d)$/;

/** The bucket length of a label made by {@link delayLabel}, or undefined. */
export function parseDelayLabel(label: string): number | undefined {
  const m = LABEL.exec(label);
  if (!m) return undefined;
  const n = Number(m[1]);
  const unit = m[2] === 'ms' ? 1 : (UNITS.find(([u]) => u === m[2])?.[1] ?? 0);
  return n * unit;
}

/** One bucket topic of a job topic. */
export interface DelayBucket {
  topic: string;
  /** 0 for the in-memory bucket. */
  ms: number;
}

export function delayTopicPrefix(topic: string): string {
  return `${topic}.delay.`;
}

export function delayTopicName(topic: string, ms: number): string {
  return `${delayTopicPrefix(topic)}${delayLabel(ms)}`;
}

/** The delay buckets of `topic` among existing topic names, shortest first (empty: no delays). */
export function findDelayBuckets(topic: string, existing: Iterable<string>): DelayBucket[] {
  const prefix = delayTopicPrefix(topic);
  const out: DelayBucket[] = [];
  for (const name of existing) {
    if (!name.startsWith(prefix)) continue;
    const ms = parseDelayLabel(name.slice(prefix.length));
    if (ms !== undefined && delayTopicName(topic, ms) === name) out.push({ topic: name, ms });
  }
  out.sort((a, b) => a.ms - b.ms);
  // Without the 0 s bucket a job due sooner than the smallest bucket has nowhere to wait.
  return out[0]?.ms === 0 ? out : [];
}

/** Bucket topics to create for `topic`, the 0 s bucket first. */
export function delayBucketsFor(topic: string, bucketsMs: readonly number[]): DelayBucket[] {
  const lengths = [...new Set([0, ...bucketsMs])].sort((a, b) => a - b);
  return lengths.map((ms) => ({ topic: delayTopicName(topic, ms), ms }));
}

/**
 * Where a record with `remainingMs` to wait goes: the largest bucket not longer than that (within
 * the tolerance), else the 0 s bucket (from the producer) or memory (in the worker), or the job
 * topic when it is due.
 */
export function chooseBucket(
  buckets: readonly DelayBucket[],
  remainingMs: number,
): { kind: 'due' } | { kind: 'bucket'; bucket: DelayBucket } {
  if (remainingMs <= 0) return { kind: 'due' };
  let best: DelayBucket | undefined;
  for (const b of buckets) if (b.ms <= remainingMs + overshoot(b.ms)) best = b;
  return best ? { kind: 'bucket', bucket: best } : { kind: 'due' };
}

/** Records a job delayed by `delayMs` writes until it is in the job topic (bucket hops + that one). */
export function writesPerDelayedJob(buckets: readonly DelayBucket[], delayMs: number): number {
  let remaining = delayMs;
  let writes = 0;
  for (let first = true; ; first = false) {
    const next = chooseBucket(buckets, remaining);
    // Due: the job topic. The 0 s bucket: written by the producer only; the worker holds it in memory.
    if (next.kind === 'due') return writes + 1;
    if (next.bucket.ms === 0) return writes + (first ? 2 : 1);
    writes++;
    remaining -= next.bucket.ms;
  }
}
