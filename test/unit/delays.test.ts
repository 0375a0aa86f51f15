import { describe, expect, it } from 'vitest';
import {
  chooseBucket,
  DEFAULT_DELAY_BUCKETS_MS,
  DELAY_HOP_TOLERANCE_MS,
  delayBucketsFor,
  delayLabel,
  delayTopicName,
  findDelayBuckets,
  parseDelayLabel,
  writesPerDelayedJob,
} from '../../src/topology/delays.js';

const buckets = delayBucketsFor('payments', DEFAULT_DELAY_BUCKETS_MS);

describe('delay buckets', () => {
  it('labels a length exactly, in the largest unit that divides it, and parses it back', () => {
    expect([0, 1000, 90_000, 3_600_000, 86_400_000, 1500].map(delayLabel)).toEqual([
      '0s',
      '1s',
      '90s',
      '1h',
      '1d',
      '1500ms',
    ]);
    for (const ms of [0, 1000, 90_000, 3_600_000, 86_400_000, 1500, 21_600_000])
      expect(parseDelayLabel(delayLabel(ms))).toBe(ms);
    expect(parseDelayLabel('1.5s')).toBeUndefined();
    expect(parseDelayLabel('s')).toBeUndefined();
  });

  it('finds a topic’s buckets among topic names, shortest first, only with the 0 s bucket', () => {
    const names = ['payments', 'payments.dlq', 'payments.delay.1h', 'payments.delay.0s', 'payments.delay.5s'];
    expect(findDelayBuckets('payments', names)).toEqual([
      { topic: 'payments.delay.0s', ms: 0 },
      { topic: 'payments.delay.5s', ms: 5000 },
      { topic: 'payments.delay.1h', ms: 3_600_000 },
    ]);
    // Another topic's buckets, a label that is not the canonical one, and no 0 s bucket.
    expect(findDelayBuckets('pay', names)).toEqual([]);
    expect(findDelayBuckets('payments', ['payments.delay.60s', 'payments.delay.1s'])).toEqual([]);
    expect(findDelayBuckets('payments', ['payments.delay.0s', 'payments.delay.60s'])).toEqual([
      { topic: 'payments.delay.0s', ms: 0 },
    ]);
    expect(delayTopicName('payments', 60_000)).toBe('payments.delay.1m');
  });

  it('chooses the largest bucket not longer than the remaining delay (within the tolerance)', () => {
    const pick = (ms: number) => {
      const c = chooseBucket(buckets, ms);
      return c.kind === 'due' ? 'due' : delayLabel(c.bucket.ms);
    };
    expect(pick(0)).toBe('due');
    expect(pick(-5)).toBe('due');
    expect(pick(500)).toBe('0s');
    expect(pick(1000)).toBe('1s');
    expect(pick(4899)).toBe('1s');
    expect(pick(4999)).toBe('5s'); // within the tolerance: 1 ms late rather than 5 hops
    expect(pick(86_400_000 - DELAY_HOP_TOLERANCE_MS)).toBe('1d');
    expect(pick(86_400_000 - DELAY_HOP_TOLERANCE_MS - 1)).toBe('6h');
    expect(pick(10 * 86_400_000)).toBe('1d');
  });

  it('never holds a job in a bucket longer than its delay plus the tolerance, and ends it due', () => {
    for (let delay = 1; delay < 3 * 86_400_000; delay = Math.ceil(delay * 1.37) + 11) {
      let remaining = delay;
      let hops = 0;
      for (;;) {
        const c = chooseBucket(buckets, remaining);
        if (c.kind === 'due' || c.bucket.ms === 0) break;
        expect(c.bucket.ms).toBeLessThanOrEqual(remaining + DELAY_HOP_TOLERANCE_MS);
        remaining -= c.bucket.ms;
        hops++;
      }
      expect(remaining).toBeGreaterThanOrEqual(-DELAY_HOP_TOLERANCE_MS);
      expect(remaining).toBeLessThan(1000 + DELAY_HOP_TOLERANCE_MS);
      expect(writesPerDelayedJob(buckets, delay)).toBeLessThanOrEqual(hops + 2);
    }
  });

  it('counts the records a delayed job writes', () => {
    expect(writesPerDelayedJob(buckets, 0)).toBe(1);
    expect(writesPerDelayedJob(buckets, 300)).toBe(2); // 0 s bucket, then the job topic
    expect(writesPerDelayedJob(buckets, 1000)).toBe(2); // 1 s bucket, then the job topic
    expect(writesPerDelayedJob(buckets, 86_400_000)).toBe(2);
    expect(writesPerDelayedJob(buckets, 86_400_000 - 1000)).toBeGreaterThan(10);
  });
});
