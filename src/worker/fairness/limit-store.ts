import type { Rate } from './options.js';

/**
 * Token buckets shared by every worker of a group (per-tenant rates across workers). `take` asks
 * for up to `want` tokens of bucket `name` refilled at `rate` and answers how many it got (0 when
 * empty) and, when it got fewer than asked, how long until the next token.
 */
export interface LimitStore {
  take(name: string, want: number, rate: Rate): Promise<{ granted: number; retryInMs: number }>;
  close?(): Promise<void>;
}
