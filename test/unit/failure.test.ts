import { describe, expect, it } from 'vitest';
import { replayHeaders } from '../../src/failure/dlq.js';
import {
  defaultClassify,
  JobTimeoutError,
  NonRetriableError,
  RetryLaterError,
} from '../../src/failure/errors.js';
import { HEADERS, headerString } from '../../src/headers.js';
import type { KafkaMessage } from '../../src/kafka/client.js';
import { backoffDelay } from '../../src/timing/backoff.js';
import { topicNames } from '../../src/topology/topics.js';
import { decide, type RetryPolicy } from '../../src/worker/policy.js';

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

describe('replayed headers', () => {
  const traceparent = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  const dead = {
    offset: '7',
    key: Buffer.from('acct-1'),
    value: Buffer.from('body'),
    timestamp: '0',
    attributes: 0,
    headers: {
      [HEADERS.jobId]: 'job-1',
      [HEADERS.enqueuedAt]: '1700000000000',
      [HEADERS.attempt]: '3',
      [HEADERS.retryLater]: '10',
      [HEADERS.dueAt]: '1700000001000',
      [HEADERS.errorClass]: 'RetryLaterError',
      [HEADERS.errorMessage]: 'the bank is closed',
      [HEADERS.failedAt]: '1700000002000',
      [HEADERS.deadReason]: 'retry-later-exhausted',
      [HEADERS.group]: 'payments-workers',
      [HEADERS.replayCount]: '1',
      traceparent,
    },
  } as unknown as KafkaMessage;

  it('start a new life: no retry-later count, failure or due time; attempt 1; replay count + 1', () => {
    const h = replayHeaders(dead);
    expect(h).toEqual({
      [HEADERS.jobId]: 'job-1',
      [HEADERS.enqueuedAt]: '1700000000000',
      [HEADERS.attempt]: '1',
      [HEADERS.replayCount]: '2',
      traceparent,
    });
  });

  it('a retry-later-exhausted job, replayed, may ask to run later again (the policy sends it to a tier)', () => {
    const h = replayHeaders(dead);
    const retryLaterCount = Number(headerString(h, HEADERS.retryLater) ?? 0);
    const policy: RetryPolicy = {
      inPlace: 0,
      inPlaceBackoff: { baseMs: 100, maxMs: 1000, jitter: 0 },
      tiers: [1000],
      maxAttempts: 5,
      maxRetryLater: 10,
    };
    const failure = {
      kind: 'retry-later',
      attempt: 1,
      fromTier: 0,
      inPlaceUsed: 0,
      retryLaterCount,
    } as const;
    expect(decide(failure, policy)).toMatchObject({ action: 'tier', retryLater: true });
  });
});
