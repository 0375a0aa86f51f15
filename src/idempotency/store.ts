/** Result of trying to start work on a job id. */
export type BeginResult =
  /** This worker holds the lease: run the handler, then `complete` (or `release` on failure). */
  | 'acquired'
  /** A completed marker exists: skip the handler, the job is a duplicate. */
  | 'completed'
  /** Another holder has a live lease: wait and ask again. */
  | 'busy';

/**
 * Where job ids are leased while they run and marked done afterwards. Every method names the
 * lease owner so a late or duplicate worker can never release or complete someone else's lease.
 */
export interface IdempotencyStore {
  begin(jobId: string, owner: string, leaseMs: number): Promise<BeginResult>;
  /** Extends a held lease; false if the lease was lost (expired and taken, or released). */
  renew(jobId: string, owner: string, leaseMs: number): Promise<boolean>;
  /** Turns a held lease into a done marker kept for `retainMs`. */
  complete(jobId: string, owner: string, retainMs: number): Promise<void>;
  /** Drops a held lease (the handler failed) so a retry can acquire it. */
  release(jobId: string, owner: string): Promise<void>;
  close?(): Promise<void>;
}

/** The store failed (unreachable, timeout): the job must not run now, and is retried later. */
export class StoreUnavailableError extends Error {
  readonly code = 'STORE_UNAVAILABLE';
  constructor(message: string, opts?: { cause?: unknown }) {
    super(message, opts);
    this.name = 'StoreUnavailableError';
  }
}
