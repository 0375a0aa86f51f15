/**
 * Token bucket: at most `max` job starts per `durationMs` per worker, refilled continuously
 * (like BullMQ's worker limiter).
 */
export class RateLimiter {
  private tokens: number;
  private last: number;

  constructor(
    private readonly max: number,
    private readonly durationMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.tokens = max;
    this.last = now();
  }

  private refill(): void {
    const t = this.now();
    const elapsed = t - this.last;
    if (elapsed > 0) {
      this.tokens = Math.min(this.max, this.tokens + (elapsed * this.max) / this.durationMs);
      this.last = t;
    }
  }

  /** Takes one token if there is one. */
  tryTake(): boolean {
    this.refill();
    if (this.tokens >= 1) {
      this.tokens -= 1;
      return true;
    }
    return false;
  }

  /** Whole tokens there are now (a batch takes one per job). */
  available(): number {
    this.refill();
    return Math.floor(this.tokens);
  }

  /** Takes `n` tokens (at most `available()`). */
  consume(n: number): void {
    this.tokens -= n;
  }

  /** Milliseconds until the next token. */
  msUntilNext(): number {
    this.refill();
    return this.tokens >= 1 ? 0 : Math.ceil(((1 - this.tokens) * this.durationMs) / this.max);
  }
}
