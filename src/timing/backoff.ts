/** Exponential backoff with jitter: `base * 2^attempt`, capped at `max`, then ±`jitter` (a fraction). */
export interface BackoffPolicy {
  baseMs: number;
  maxMs: number;
  jitter: number;
}

export const defaultBackoff: BackoffPolicy = { baseMs: 100, maxMs: 5_000, jitter: 0.2 };

/** Delay before retry number `attempt` (0 for the first retry). */
export function backoffDelay(
  policy: BackoffPolicy,
  attempt: number,
  random: () => number = Math.random,
): number {
  const exp = Math.min(policy.maxMs, policy.baseMs * 2 ** Math.max(0, attempt));
  const spread = exp * policy.jitter;
  return Math.max(0, Math.round(exp - spread + random() * 2 * spread));
}

/**
 * The waits of the runtime's retry loops, in one place (as BullMQ's backoffs registry): each loop
 * names its policy instead of spelling out numbers.
 */
export const retryPolicies = {
  /** A writer schema that cannot be fetched (registry down): the job waits, it is not dead-lettered. */
  registry: { baseMs: 500, maxMs: 10_000, jitter: 0.2 },
  /** The idempotency store does not answer: the job waits (fail closed). */
  store: { baseMs: 200, maxMs: 5_000, jitter: 0.2 },
  /** A tier or DLQ record was not acknowledged: send it again. */
  produce: { baseMs: 200, maxMs: 5_000, jitter: 0.2 },
  /** A job failed outside its handler (a fault, no outcome): it starts over, keeping its key. */
  fault: { baseMs: 1_000, maxMs: 60_000, jitter: 0.2 },
  /** kafkajs left the group for good after a crash: the worker restarts the consumer. */
  consumerRestart: { baseMs: 1_000, maxMs: 30_000, jitter: 0.2 },
  /**
   * A transaction step the coordinator answered "busy" (CONCURRENT_TRANSACTIONS while it still
   * writes the previous transaction's markers, or a coordinator moving): ask again, briefly.
   */
  transaction: { baseMs: 50, maxMs: 2_000, jitter: 0.2 },
  /** The outbox relay lost PostgreSQL, Kafka or the registry: it starts its session over. */
  outbox: { baseMs: 500, maxMs: 10_000, jitter: 0.2 },
} as const satisfies Record<string, BackoffPolicy>;

export type RetryPolicyName = keyof typeof retryPolicies;

/**
 * Runs `attempt` until it succeeds. After each failure `onError` decides: it may throw (to give
 * up, e.g. the worker stops or lost the partition) or return; then `wait` sleeps the policy's
 * backoff. The one retry loop of the runtime.
 */
export async function retryWithBackoff<T>(
  policy: RetryPolicyName | BackoffPolicy,
  attempt: (n: number) => Promise<T>,
  hooks: {
    onError: (error: unknown, n: number) => void | Promise<void>;
    wait: (ms: number) => Promise<void>;
    random?: () => number;
  },
): Promise<T> {
  const p = typeof policy === 'string' ? retryPolicies[policy] : policy;
  for (let n = 0; ; n++) {
    try {
      return await attempt(n);
    } catch (error) {
      await hooks.onError(error, n);
      await hooks.wait(backoffDelay(p, n, hooks.random));
    }
  }
}
