import { NonRetriableError, normalizeThrown } from '../failure/errors.js';
import type { IdempotencyStore } from '../idempotency/store.js';
import { retryWithBackoff } from '../timing/backoff.js';
import { type Clock, every } from '../timing/clock.js';
import type { JobLog } from './job-log.js';
import type { Job } from './options.js';
import type { WorkItem } from './work-item.js';

/** Thrown by a wait when the job should not go on (the worker stops, or lost its partition). */
export class Abandoned extends Error {}

/**
 * The worker's `idempotency.key` threw or gave no usable id for a job: the job cannot be checked
 * for duplicates, so it is not run; it goes to the DLQ with this reason (never lost, never run
 * unchecked).
 */
export class IdempotencyKeyError extends NonRetriableError {}

/**
 * The job's lease in the idempotency store, as BullMQ's lock manager keeps a job's lock: taken
 * before the handler runs (a done marker means a duplicate), renewed while it runs, turned into a
 * done marker after success, released after a failure. The store is asked about
 * `<scope>:<job id>`; the scope (by default `<group>/<topic>`) keeps two groups sharing a store
 * from taking each other's jobs for duplicates.
 */
export class LeaseKeeper {
  constructor(
    private readonly store: IdempotencyStore,
    private readonly opts: {
      leaseMs: number;
      retainMs: number;
      scope: string | false;
      key: ((job: Job<never>) => string) | undefined;
      workerId: string;
      clock: Clock;
      random: () => number;
      onStoreUnavailable: () => void;
    },
  ) {}

  /** Ids already computed (a job's key function runs once per attempt). */
  private readonly ids = new WeakMap<Job<unknown>, string>();

  /** The id in the store; throws `IdempotencyKeyError` when `idempotency.key` fails for the job. */
  idOf(job: Job<unknown>): string {
    let id = this.ids.get(job);
    if (id !== undefined) return id;
    const own = this.opts.key ? this.ownKey(job) : job.id;
    id = this.opts.scope === false ? own : `${this.opts.scope}:${own}`;
    this.ids.set(job, id);
    return id;
  }

  private ownKey(job: Job<unknown>): string {
    let id: unknown;
    try {
      id = this.opts.key!(job as Job<never>);
    } catch (error) {
      const message = (normalizeThrown(error, 'idempotency.key') as Error).message;
      throw new IdempotencyKeyError(`idempotency.key threw for job ${job.id}: ${message}`, { cause: error });
    }
    if (typeof id === 'string' && id !== '') return id;
    throw new IdempotencyKeyError(
      `idempotency.key returned ${typeof id === 'string' ? 'an empty string' : typeof id} for job ${job.id}; expected a non-empty string`,
    );
  }

  /**
   * The lease owner is this worker *and* this record: two records with one job id (a duplicate
   * enqueue) must not both hold the lease, even inside one worker.
   */
  private ownerOf(item: WorkItem): string {
    return `${this.opts.workerId}/${item.tp}/${item.offset}`;
  }

  /**
   * Takes the lease; 'completed' means a duplicate. While another holder has it, asks again; while
   * the store does not answer, the job waits (fail closed). `wait` throws `Abandoned` to give up.
   */
  async acquire(
    item: WorkItem,
    job: Job<unknown>,
    log: JobLog,
    wait: (ms: number) => Promise<void>,
    /** Called when another holder has the lease (a batch's job then stops holding its batch up). */
    onBusy?: () => void,
  ): Promise<'acquired' | 'completed'> {
    const id = this.idOf(job);
    const { leaseMs } = this.opts;
    let busy = 0;
    for (;;) {
      const result = await retryWithBackoff(
        'store',
        () => this.store.begin(id, this.ownerOf(item), leaseMs),
        {
          onError: (error, n) => {
            if (n % 10 === 0)
              log.logger.warn({ err: error }, 'idempotency store unavailable; the job waits (fail closed)');
            this.opts.onStoreUnavailable();
          },
          wait,
          random: this.opts.random,
        },
      );
      if (result !== 'busy') return result;
      onBusy?.();
      if (busy % 20 === 0)
        log.logger.info({ idempotencyKey: id }, 'job id is leased by another worker; waiting');
      await wait(Math.min(leaseMs / 4, 250 * 2 ** Math.min(busy++, 4)));
    }
  }

  /** Keeps the lease alive while the handler runs (every third of the lease); returns the stop. */
  keepAlive(item: WorkItem, job: Job<unknown>, log: JobLog): () => void {
    const id = this.idOf(job);
    const { leaseMs, clock } = this.opts;
    return every(clock, Math.max(50, Math.floor(leaseMs / 3)), () => {
      this.store.renew(id, this.ownerOf(item), leaseMs).then(
        (held) => {
          if (!held)
            log.logger.warn(
              { idempotencyKey: id },
              'idempotency lease lost while the job ran (it outlived leaseMs?)',
            );
        },
        (error: unknown) => log.logger.warn({ err: error }, 'could not renew the idempotency lease'),
      );
    });
  }

  /**
   * Turns the lease into a done marker. The side effect happened, so this keeps trying (the lease
   * still blocks other holders meanwhile) until `wait` gives up.
   */
  async finish(
    item: WorkItem,
    job: Job<unknown>,
    log: JobLog,
    wait: (ms: number) => Promise<void>,
  ): Promise<void> {
    const id = this.idOf(job);
    await retryWithBackoff('store', () => this.store.complete(id, this.ownerOf(item), this.opts.retainMs), {
      onError: (error, n) => {
        if (n % 10 === 0)
          log.logger.warn({ err: error }, 'could not mark the job done in the idempotency store; retrying');
      },
      wait,
      random: this.opts.random,
    });
  }

  /**
   * The side effect happened: the done marker now, or with `afterRound` (exactly once) once the
   * job's round committed; an aborted round drops the lease instead (the job runs again).
   */
  async done(
    item: WorkItem,
    job: Job<unknown>,
    log: JobLog,
    wait: (ms: number) => Promise<void>,
    afterRound: boolean,
  ): Promise<void> {
    if (!afterRound) return this.finish(item, job, log, wait);
    item.onRound = (committed) =>
      void (committed ? this.finish(item, job, log, wait) : this.release(item, job)).catch(() => undefined);
  }

  /** Drops the lease after a failure so a retry can take it (best effort: it expires anyway). */
  async release(item: WorkItem, job: Job<unknown>): Promise<void> {
    await this.store.release(this.idOf(job), this.ownerOf(item)).catch(() => undefined);
  }
}
