import { describe, expect, it } from 'vitest';
import {
  type Decision,
  decide,
  type Failure,
  type RetryPolicy,
  tierForDelay,
} from '../../../src/worker/policy.js';

const policy: RetryPolicy = {
  inPlace: 1,
  inPlaceBackoff: { baseMs: 100, maxMs: 5000, jitter: 0 },
  tiers: [1000, 10_000, 60_000],
  maxAttempts: 5,
  maxRetryLater: 3,
};
const noTiers: RetryPolicy = { ...policy, tiers: [] };
const base: Failure = { kind: 'retriable', attempt: 1, fromTier: 0, inPlaceUsed: 0, retryLaterCount: 0 };

// Every row: the failure, the options, and where the job must go.
const rows: [string, Partial<Failure>, RetryPolicy, Decision][] = [
  ['retriable, first attempt: in place', {}, policy, { action: 'in-place', delayMs: 100, nextAttempt: 2 }],
  [
    'retriable, in-place spent: tier 1',
    { inPlaceUsed: 1, attempt: 2 },
    policy,
    { action: 'tier', tier: 1, delayMs: 1000, nextAttempt: 3, retryLater: false },
  ],
  [
    'retriable from tier 1: tier 2',
    { fromTier: 1, inPlaceUsed: 1, attempt: 3 },
    policy,
    { action: 'tier', tier: 2, delayMs: 10_000, nextAttempt: 4, retryLater: false },
  ],
  [
    'retriable from the last tier: the last tier again',
    { fromTier: 3, inPlaceUsed: 1, attempt: 4 },
    policy,
    { action: 'tier', tier: 3, delayMs: 60_000, nextAttempt: 5, retryLater: false },
  ],
  ['retriable, last attempt: DLQ', { attempt: 5 }, policy, { action: 'dlq', reason: 'attempts-exhausted' }],
  [
    'non-retriable: DLQ at once',
    { kind: 'non-retriable' },
    policy,
    { action: 'dlq', reason: 'non-retriable' },
  ],
  [
    'non-retriable beats attempts left in place',
    { kind: 'non-retriable', inPlaceUsed: 0 },
    policy,
    { action: 'dlq', reason: 'non-retriable' },
  ],
  [
    'retriable, no tiers: in place, backoff grows',
    { inPlaceUsed: 2, attempt: 3 },
    noTiers,
    { action: 'in-place', delayMs: 400, nextAttempt: 4 },
  ],
  [
    'retriable, no tiers, last attempt: DLQ',
    { attempt: 5, inPlaceUsed: 4 },
    noTiers,
    { action: 'dlq', reason: 'attempts-exhausted' },
  ],
  [
    'retry-later 5 s: the tier that fits, attempt kept',
    { kind: 'retry-later', requestedDelayMs: 5000 },
    policy,
    { action: 'tier', tier: 2, delayMs: 5000, nextAttempt: 1, retryLater: true },
  ],
  [
    'retry-later beyond the last tier: the last tier',
    { kind: 'retry-later', requestedDelayMs: 3_600_000 },
    policy,
    { action: 'tier', tier: 3, delayMs: 3_600_000, nextAttempt: 1, retryLater: true },
  ],
  [
    'retry-later without a delay: the first tier\'s delay (never "now")',
    { kind: 'retry-later' },
    policy,
    { action: 'tier', tier: 1, delayMs: 1000, nextAttempt: 1, retryLater: true },
  ],
  [
    'retry-later 0 ms: floored to the first tier',
    { kind: 'retry-later', requestedDelayMs: 0 },
    policy,
    { action: 'tier', tier: 1, delayMs: 1000, nextAttempt: 1, retryLater: true },
  ],
  [
    'retry-later on the last attempt still waits (no attempt used)',
    { kind: 'retry-later', attempt: 5 },
    policy,
    { action: 'tier', tier: 1, delayMs: 1000, nextAttempt: 5, retryLater: true },
  ],
  [
    'retry-later after maxRetryLater hops: DLQ',
    { kind: 'retry-later', retryLaterCount: 3 },
    policy,
    { action: 'dlq', reason: 'retry-later-exhausted' },
  ],
  [
    'retry-later, no tiers: in place with its delay',
    { kind: 'retry-later', requestedDelayMs: 250 },
    noTiers,
    { action: 'in-place', delayMs: 250, nextAttempt: 2 },
  ],
  [
    'retry-later, no tiers, no delay: in-place backoff',
    { kind: 'retry-later' },
    noTiers,
    { action: 'in-place', delayMs: 100, nextAttempt: 2 },
  ],
  // Not from a RetryLaterError (its constructor refuses these): an application error that `classify`
  // calls 'retry-later' and that carries an unusable delayMs counts as giving none.
  ...[Number.NaN, -5000, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, '5000' as unknown as number].map(
    (requestedDelayMs): [string, Partial<Failure>, RetryPolicy, Decision] => [
      `retry-later with delayMs ${String(requestedDelayMs)} (${typeof requestedDelayMs}): as if none, the first tier`,
      { kind: 'retry-later', requestedDelayMs },
      policy,
      { action: 'tier', tier: 1, delayMs: 1000, nextAttempt: 1, retryLater: true },
    ],
  ),
  [
    'retry-later with delayMs NaN, no tiers: the in-place backoff',
    { kind: 'retry-later', requestedDelayMs: Number.NaN },
    noTiers,
    { action: 'in-place', delayMs: 100, nextAttempt: 2 },
  ],
  [
    'retry-later, no tiers, last attempt: DLQ',
    { kind: 'retry-later', attempt: 5 },
    noTiers,
    { action: 'dlq', reason: 'attempts-exhausted' },
  ],
];

describe('retry policy (a pure decision)', () => {
  it.each(rows)('%s', (_name, failure, p, expected) => {
    expect(decide({ ...base, ...failure }, p, () => 0.5)).toEqual(expected);
  });

  it('a job asking to retry later forever reaches the DLQ after maxRetryLater hops, never faster than the first tier', () => {
    let count = 0;
    let waited = 0;
    for (;;) {
      const d = decide({ ...base, kind: 'retry-later', retryLaterCount: count }, policy);
      if (d.action === 'dlq') break;
      expect(d.action).toBe('tier');
      if (d.action === 'tier') waited += d.delayMs;
      count++;
    }
    expect(count).toBe(policy.maxRetryLater);
    expect(waited).toBe(policy.maxRetryLater * 1000);
  });

  it('tierForDelay picks the first tier at least as long as the delay', () => {
    expect(tierForDelay([1000, 10_000], 1)).toBe(1);
    expect(tierForDelay([1000, 10_000], 1000)).toBe(1);
    expect(tierForDelay([1000, 10_000], 1001)).toBe(2);
    expect(tierForDelay([1000, 10_000], 99_999)).toBe(2);
  });
});
