import { HEADERS } from '../headers.js';
import type { Clock, TimerHandle } from '../timing/clock.js';
import { RateLimiter } from '../timing/limiter.js';
import type { BatchCall } from './batch.js';
import type { TenantQueue } from './fairness/tenant-queue.js';
import { KeyScheduler, type OrderingMode } from './key-scheduler.js';
import type { RunState } from './run-state.js';
import type { WorkItem } from './work-item.js';

/**
 * A handler attempt's abort signal, made only if the handler reads `ctx.signal` (most do not, and
 * an AbortController per job is a measurable cost at tens of thousands of jobs per second).
 */
export class AttemptSignal {
  private controller: AbortController | undefined;
  private aborted = false;
  private reason: unknown;

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.aborted) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  abort(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    this.controller?.abort(reason);
  }
}

/**
 * What holds a concurrency slot: one started job, or one batch (its jobs share it). Its current
 * attempt's signal, and why the worker stopped it (if it did).
 */
export interface JobSlot {
  attempt?: AttemptSignal | undefined;
  stopReason?: unknown;
  /** Jobs of this start not yet settled: 1, or the batch's size. The slot is free at 0. */
  open: number;
  /** A batch's handler call (batch.ts); undefined for one job. */
  batch?: BatchCall | undefined;
  /** While it waits to get a slot back (reentry). */
  readmitted?: Promise<boolean> | undefined;
}

const isRelease = (item: WorkItem) => item.rawHeaders?.[HEADERS.release] !== undefined;

/** How batches are formed (batchHandler workers). */
export interface BatchShape {
  readonly maxSize: number;
  readonly maxWaitMs: number;
  /**
   * At most one job per key in a batch (strict key order: a job failing into a retry tier parks
   * its key, which must not have a later job completed in the same call).
   */
  readonly onePerKey?: boolean;
}

/**
 * Decides which accepted job starts next and when: the key scheduler (per-key order), the
 * concurrency limit and the rate limiter. A started job holds a slot until it finishes, except
 * while it waits for its writer schema (registry down) or after its handler overran
 * `jobTimeoutMs` twice (stuck): then it keeps its key — order holds — but gives the slot to other
 * jobs, and takes a free one again (before new jobs) when it needs to run a handler.
 *
 * With `batch`, what starts is a batch (`KeyScheduler.takeBatch`): up to `maxSize` jobs, taken when
 * that many are runnable, when `maxWaitMs` passed since a slot first waited for them, or when the
 * buffer is full (no more would come). Its jobs share one slot, held until the last one settled;
 * the limiter counts jobs.
 */
export class Dispatcher {
  private readonly scheduler: KeyScheduler<WorkItem>;
  private readonly limiter: RateLimiter | undefined;
  private limiterTimer: TimerHandle | undefined;
  /** Batches: since when a free slot waits for a batch to fill, and the timer that closes it. */
  private formingSince: number | undefined;
  private formTimer: TimerHandle | undefined;
  /** Starts holding a slot. */
  private readonly running = new Set<JobSlot>();
  /** Started without a slot (waiting for the registry, or stuck in their handler). */
  private readonly slotless = new Set<JobSlot>();
  /** Slotless starts that want a slot again, oldest request first; they go before new jobs. */
  private readonly reentry: { slot: JobSlot; admit: (admitted: boolean) => void }[] = [];
  private readonly stuck = new Set<JobSlot>();
  /** The acceptance order of the worker's jobs (`WorkItem.seq`). */
  private accepted = 0;

  constructor(
    private readonly opts: {
      concurrency: number;
      ordering: OrderingMode;
      limiter?: { max: number; durationMs: number } | undefined;
      batch?: BatchShape | undefined;
      clock: Clock;
      state: RunState;
      /** Runs a started job to its end and then calls `settle` (never rejects). */
      run: (item: WorkItem, slot: JobSlot) => Promise<void>;
      /** Runs a started batch: every job of it to its end, each then calling `settle`. */
      runBatch?: (items: readonly WorkItem[], slot: JobSlot) => void;
      /** Could more jobs be accepted now (room in the buffer)? A batch does not wait for jobs that cannot come. */
      canGrow?: () => boolean;
      finished: (item: WorkItem) => void;
      /** No start holds a slot now (one finished, or gave its slot back): a drain or a stop waits for this. */
      idle?: () => void;
      /** Tenants in weighted turn, per-key and per-tenant limits (fairness/): the scheduler's runnable jobs. */
      tenants?: TenantQueue<WorkItem> | undefined;
    },
  ) {
    this.scheduler = new KeyScheduler(opts.ordering, opts.batch !== undefined, opts.tenants);
    // A shared rate bucket answered: its tenant's jobs may start.
    if (opts.tenants) opts.tenants.wake = () => this.pump();
    const l = opts.limiter;
    this.limiter = l ? new RateLimiter(l.max, l.durationMs, () => opts.clock.now()) : undefined;
  }

  /** Batches of at most one job per key (strict key order): they fill only with heads of many keys. */
  get onePerKey(): boolean {
    return this.opts.batch?.onePerKey === true;
  }

  /** Starts (jobs, or batches) holding a concurrency slot. */
  get inflight(): number {
    return this.running.size;
  }

  /** Jobs of the starts holding a slot (a batch counts its unsettled jobs). */
  get inflightJobs(): number {
    let n = 0;
    for (const slot of this.running) n += slot.open;
    return n;
  }

  /** Starts whose handler ran past twice its timeout (slot given back, keys still held). */
  get stuckJobs(): number {
    return this.stuck.size;
  }

  /** Starts, with or without a slot. */
  get started(): number {
    return this.running.size + this.slotless.size;
  }

  /**
   * The next acceptance number (the intake's jobs, and a release a worker makes itself): one made
   * now goes behind the jobs accepted before it and ahead of later ones, never behind them all.
   */
  nextSeq(): number {
    return this.accepted++;
  }

  add(item: WorkItem): void {
    this.scheduler.add(item);
  }

  /** Starts jobs (or batches) while there are slots, runnable jobs and tokens. */
  pump(): void {
    const { state, concurrency } = this.opts;
    if (!state.canStart) return;
    this.admitWaiting();
    while (this.running.size < concurrency && this.reentry.length === 0 && this.scheduler.hasRunnable) {
      if (this.opts.batch) {
        if (!this.startBatch(this.opts.batch)) return;
        continue;
      }
      if (this.limiter && !this.limiter.tryTake()) {
        this.waitForToken();
        return;
      }
      const item = this.scheduler.nextRunnable();
      if (!item) {
        // Runnable jobs over a rate limit wait here, holding no slot, until a token is due.
        const ms = this.opts.tenants?.wakeInMs();
        if (ms !== undefined) this.waitForToken(Math.max(1, ms));
        return;
      }
      const slot: JobSlot = { open: 1 };
      item.slot = slot;
      this.running.add(slot);
      void this.opts.run(item, slot);
    }
  }

  private waitForToken(ms = this.limiter!.msUntilNext()): void {
    this.limiterTimer ??= this.opts.clock.setTimeout(
      () => {
        this.limiterTimer = undefined;
        this.pump();
      },
      ms,
      { unref: true },
    );
  }

  /** Starts one batch if it is full, or waited long enough; false when nothing started. */
  private startBatch({ maxSize, maxWaitMs, onePerKey }: BatchShape): boolean {
    const { clock, canGrow } = this.opts;
    const room = this.limiter ? Math.min(maxSize, this.limiter.available()) : maxSize;
    if (room < 1) {
      this.waitForToken();
      return false;
    }
    // One job per key: only the heads of distinct keys fill it (their queues cannot), and more heads
    // come as running batches free their keys, even while the buffer is full.
    const takeable = onePerKey ? this.scheduler.heads : this.scheduler.takeable;
    const more = (canGrow?.() ?? true) || (onePerKey === true && this.running.size > 0);
    if (takeable < room && maxWaitMs > 0 && more && !this.scheduler.soloLeft) {
      const now = clock.now();
      this.formingSince ??= now;
      const left = this.formingSince + maxWaitMs - now;
      if (left > 0) {
        this.formTimer ??= clock.setTimeout(
          () => {
            this.formTimer = undefined;
            this.pump();
          },
          left,
          { unref: true },
        );
        return false;
      }
    }
    clock.clearTimeout(this.formTimer);
    this.formTimer = undefined;
    this.formingSince = undefined;
    // Strict order: a release record runs its key's parked jobs one by one in a batch of its own.
    const items = this.scheduler.takeBatch(room, onePerKey, onePerKey ? isRelease : undefined);
    if (items.length === 0) return false;
    this.limiter?.consume(items.length);
    const slot: JobSlot = { open: items.length };
    for (const item of items) item.slot = slot;
    this.running.add(slot);
    this.opts.runBatch!(items, slot);
    return true;
  }

  /** A started job is over: its key's lane goes back, and its slot once every job of the start settled. */
  settle(item: WorkItem): void {
    const slot = item.slot;
    if (slot && --slot.open === 0) {
      this.running.delete(slot);
      this.slotless.delete(slot);
      this.stuck.delete(slot);
    }
    if (!item.laneFreed) this.scheduler.finish(item);
    this.opts.tenants?.finished(item);
    this.opts.finished(item);
    if (this.running.size === 0) this.opts.idle?.();
    this.pump();
  }

  /**
   * The next job of the item's key may start while the item still holds its slot (a parked job
   * whose hand-off to the parking topic is under way: its order there is by offset, not by write).
   */
  releaseLane(item: WorkItem): void {
    if (item.laneFreed) return;
    item.laneFreed = true;
    this.scheduler.finish(item);
    // A release whose record is done runs other tenants' parked jobs in its slot: it is no start of
    // NO_TENANT any more, whose other release records (its own key's too) would wait for its end
    // under `limits.perTenant.concurrency` and hold their partition's commit point (sim seed 16467).
    if (isRelease(item)) this.opts.tenants?.finished(item);
    this.pump();
  }

  /** The job (with its batch) gives its slot up for a while (it keeps its key). */
  releaseSlot(item: WorkItem): void {
    const slot = item.slot;
    if (!slot || !this.running.has(slot)) return;
    this.running.delete(slot);
    this.slotless.add(slot);
    // A drain waiting for the slots to empty ends now, not at its budget (sim seed 80407).
    if (this.running.size === 0) this.opts.idle?.();
    // Not from here: the dispatcher may be what started this job; it sees the free slot next tick.
    queueMicrotask(() => this.pump());
  }

  /** A handler overran its timeout twice: counted as stuck, its slot goes to other jobs. */
  markStuck(item: WorkItem): void {
    const slot = item.slot;
    if (!slot || this.stuck.has(slot) || !this.running.has(slot)) return;
    this.stuck.add(slot);
    this.releaseSlot(item);
  }

  holdsSlot(item: WorkItem): boolean {
    return item.slot !== undefined && this.running.has(item.slot);
  }

  /**
   * Waits for a free slot for a slotless job (before new jobs get one); the jobs of a batch wait
   * for the same one. Resolves false when the worker stops first.
   */
  reacquireSlot(item: WorkItem): Promise<boolean> {
    const slot = item.slot;
    if (!slot) return Promise.resolve(false);
    if (this.running.has(slot)) return Promise.resolve(true);
    this.stuck.delete(slot);
    if (slot.readmitted) return slot.readmitted;
    const readmitted = new Promise<boolean>((admit) => this.reentry.push({ slot, admit }));
    slot.readmitted = readmitted;
    this.admitWaiting();
    return readmitted;
  }

  private admitWaiting(): void {
    if (!this.opts.state.canStart) return;
    while (this.reentry.length > 0 && this.running.size < this.opts.concurrency) {
      const next = this.reentry.shift()!;
      next.slot.readmitted = undefined;
      this.slotless.delete(next.slot);
      this.running.add(next.slot);
      next.admit(true);
    }
  }

  /** Waiting jobs of a revoked partition leave; started ones finish (uncommitted). */
  dropPartition(tp: string): WorkItem[] {
    return this.scheduler.dropPartition(tp);
  }

  /** Aborts every started job's handler signal (shutdown past its budget). */
  abortAll(reason: unknown): void {
    for (const slot of [...this.running, ...this.slotless]) {
      slot.stopReason = reason;
      slot.attempt?.abort(reason);
    }
  }

  /** Stop: jobs waiting for a slot end without running (uncommitted, redelivered later). */
  releaseWaiting(): void {
    this.opts.clock.clearTimeout(this.limiterTimer);
    this.opts.clock.clearTimeout(this.formTimer);
    this.formTimer = undefined;
    for (const waiting of this.reentry.splice(0)) {
      waiting.slot.readmitted = undefined;
      waiting.admit(false);
    }
  }
}
