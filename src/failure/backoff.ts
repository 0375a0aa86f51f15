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
