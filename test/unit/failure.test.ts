import { describe, expect, it } from 'vitest';
import {
  defaultClassify,
  JobTimeoutError,
  NonRetriableError,
  RetryLaterError,
} from '../../src/failure/errors.js';
import { backoffDelay } from '../../src/timing/backoff.js';
import { topicNames } from '../../src/topology/topics.js';

describe('classification', () => {
  it('routes by error kind', () => {
    expect(defaultClassify(new Error('boom'))).toBe('retriable');
    expect(defaultClassify(new TypeError('x is undefined'))).toBe('non-retriable');
    expect(defaultClassify(new RangeError('r'))).toBe('non-retriable');
    expect(defaultClassify(new NonRetriableError('bad'))).toBe('non-retriable');
    expect(defaultClassify(new RetryLaterError({ delayMs: 10 }))).toBe('retry-later');
    expect(defaultClassify(new JobTimeoutError(5))).toBe('retriable');
    expect(defaultClassify('a string')).toBe('retriable');
  });
});

describe('backoff', () => {
  it('doubles per attempt, caps, and jitters within the band', () => {
    const p = { baseMs: 100, maxMs: 1000, jitter: 0.25 };
    expect(backoffDelay(p, 0, () => 0.5)).toBe(100);
    expect(backoffDelay(p, 3, () => 0.5)).toBe(800);
    expect(backoffDelay(p, 10, () => 0.5)).toBe(1000);
    expect(backoffDelay(p, 2, () => 0)).toBe(300);
    expect(backoffDelay(p, 2, () => 1)).toBe(500);
  });
});

describe('topic names', () => {
  it('derives tiers, the DLQ and the parking topic from the job topic', () => {
    expect(topicNames('payments', 3)).toEqual({
      main: 'payments',
      tiers: ['payments.retry.1', 'payments.retry.2', 'payments.retry.3'],
      dlq: 'payments.dlq',
      parked: 'payments.parked',
    });
  });
});
