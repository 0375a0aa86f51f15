import { type FailureKind, isRetryDelay } from '../failure/errors.js';
import { type BackoffPolicy, backoffDelay } from '../timing/backoff.js';

/** The retry options the decision needs. */
export interface RetryPolicy {
  /** In-place retries per delivery. */
  readonly inPlace: number;
  readonly inPlaceBackoff: BackoffPolicy;
  /** Tier delays in ms; tier n is `tiers[n - 1]`. */
  readonly tiers: readonly number[];
  /** Handler attempts before the DLQ. */
  readonly maxAttempts: number;
  /** `RetryLaterError`s (or `classify` → 'retry-later') a job may ask for before the DLQ. */
  readonly maxRetryLater: number;
}

/** One failed attempt, as the decision sees it. */
export interface Failure {
  readonly kind: FailureKind;
  /** `delayMs` of a `RetryLaterError`, when the error carries one. */
  readonly requestedDelayMs?: number | undefined;
  /** The attempt that failed (1 for the first). */
  readonly attempt: number;
  /** Tier the job was consumed from (0 = the job topic). */
  readonly fromTier: number;
  /** In-place retries already spent on this delivery. */
  readonly inPlaceUsed: number;
  /** Times the job already asked to run later (`strand-retry-later`). */
  readonly retryLaterCount: number;
}

export type DeadReason = 'non-retriable' | 'attempts-exhausted' | 'retry-later-exhausted';

/** Where a failed job goes next. */
export type Decision =
  | { readonly action: 'dlq'; readonly reason: DeadReason }
  | { readonly action: 'in-place'; readonly delayMs: number; readonly nextAttempt: number }
  | {
      readonly action: 'tier';
      readonly tier: number;
      /** Wait before it is due. */
      readonly delayMs: number;
      readonly nextAttempt: number;
      /** A retry-later hop: counted in `strand-retry-later`, the attempt is not used up. */
      readonly retryLater: boolean;
    };

/** The first tier whose delay is >= `delayMs` (or the last). */
export function tierForDelay(tiers: readonly number[], delayMs: number): number {
  const i = tiers.findIndex((d) => d >= delayMs);
  return i < 0 ? tiers.length : i + 1;
}

/**
 * Where a failed job goes: a pure function of the failure and the options (no I/O, no clock), so
 * every row of the table can be tested (test/unit/worker/policy.test.ts).
 *
 * - retry-later with tiers: the tier that fits the delay, not using an attempt; the delay is at
 *   least the first tier's (a retry-later without a delay must not loop at full speed), and after
 *   `maxRetryLater` such hops the job is dead-lettered. A delay longer than the last tier keeps its
 *   length here: the router waits it out in the delay buckets, or caps it without them (router.ts);
 * - non-retriable, or the last attempt failed: the DLQ;
 * - in-place retries left (or no tiers at all): again in this worker after a backoff;
 * - otherwise the next tier (the last one repeats), using an attempt.
 */
export function decide(failure: Failure, policy: RetryPolicy, random: () => number = Math.random): Decision {
  const hasTiers = policy.tiers.length > 0;
  // `RetryLaterError` checks its delay; an error of the application's own that `classify` calls
  // 'retry-later' may carry anything as `delayMs`: what is not a usable delay counts as none given.
  const requested = isRetryDelay(failure.requestedDelayMs) ? failure.requestedDelayMs : undefined;
  if (failure.kind === 'retry-later' && hasTiers) {
    if (failure.retryLaterCount >= policy.maxRetryLater)
      return { action: 'dlq', reason: 'retry-later-exhausted' };
    const delayMs = Math.max(policy.tiers[0]!, requested ?? 0);
    return {
      action: 'tier',
      tier: tierForDelay(policy.tiers, delayMs),
      delayMs,
      nextAttempt: failure.attempt,
      retryLater: true,
    };
  }
  if (failure.kind === 'non-retriable') return { action: 'dlq', reason: 'non-retriable' };
  if (failure.attempt >= policy.maxAttempts) return { action: 'dlq', reason: 'attempts-exhausted' };
  if (failure.inPlaceUsed < policy.inPlace || !hasTiers) {
    const delayMs =
      failure.kind === 'retry-later'
        ? (requested ?? backoffDelay(policy.inPlaceBackoff, failure.inPlaceUsed, random))
        : backoffDelay(policy.inPlaceBackoff, failure.inPlaceUsed, random);
    return { action: 'in-place', delayMs, nextAttempt: failure.attempt + 1 };
  }
  const tier = Math.min(failure.fromTier + 1, policy.tiers.length);
  return {
    action: 'tier',
    tier,
    delayMs: policy.tiers[tier - 1]!,
    nextAttempt: failure.attempt + 1,
    retryLater: false,
  };
}
