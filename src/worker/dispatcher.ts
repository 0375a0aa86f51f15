import type { Clock, TimerHandle } from '../timing/clock.js';
import { RateLimiter } from '../timing/limiter.js';
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

/** A started job: its current attempt's signal, and why the worker stopped it (if it did). */
export interface JobSlot {
  attempt?: AttemptSignal | undefined;
  stopReason?: unknown;
}

/**
 * Decides which accepted job starts next and when: the key scheduler (per-key order), the
 * concurrency limit and the rate limiter. A started job holds a slot until it finishes, except
 * while it waits for its writer schema (registry down) or after its handler overran
 * `jobTimeoutMs` twice (stuck): then it keeps its key — order holds — but gives the slot to other
 * jobs, and takes a free one again (before new jobs) when it needs to run a handler.
 */
export class Dispatcher {
  private readonly scheduler: KeyScheduler<WorkItem>;
  private readonly limiter: RateLimiter | undefined;
  private limiterTimer: TimerHandle | undefined;
  /** Jobs holding a slot. */
  private readonly running = new Map<WorkItem, JobSlot>();
  /** Started jobs without a slot (waiting for the registry, or stuck in their handler). */
  private readonly slotless = new Map<WorkItem, JobSlot>();
  /** Slotless jobs that want a slot again, oldest request first; they go before new jobs. */
  private readonly reentry: { item: WorkItem; admit: (admitted: boolean) => void }[] = [];
  private readonly stuck = new Set<WorkItem>();

  constructor(
    private readonly opts: {
      concurrency: number;
      ordering: OrderingMode;
      limiter?: { max: number; durationMs: number } | undefined;
      clock: Clock;
      state: RunState;
      /** Runs a started job to its end and then calls `settle` (never rejects). */
      run: (item: WorkItem, slot: JobSlot) => Promise<void>;
      finished: (item: WorkItem) => void;
    },
  ) {
    this.scheduler = new KeyScheduler(opts.ordering);
    const l = opts.limiter;
    this.limiter = l ? new RateLimiter(l.max, l.durationMs, () => opts.clock.now()) : undefined;
  }

  /** Jobs holding a concurrency slot. */
  get inflight(): number {
    return this.running.size;
  }

  /** Jobs whose handler ran past twice its timeout (slot given back, key still held). */
  get stuckJobs(): number {
    return this.stuck.size;
  }

  /** Started jobs, with or without a slot. */
  get started(): number {
    return this.running.size + this.slotless.size;
  }

  add(item: WorkItem): void {
    this.scheduler.add(item);
  }

  /** Starts jobs while there are slots, runnable jobs and tokens. */
  pump(): void {
    const { state, concurrency } = this.opts;
    if (!state.canStart) return;
    this.admitWaiting();
    while (this.running.size < concurrency && this.reentry.length === 0 && this.scheduler.hasRunnable) {
      if (this.limiter && !this.limiter.tryTake()) {
        this.limiterTimer ??= this.opts.clock.setTimeout(
          () => {
            this.limiterTimer = undefined;
            this.pump();
          },
          this.limiter.msUntilNext(),
          { unref: true },
        );
        return;
      }
      const item = this.scheduler.nextRunnable();
      if (!item) return;
      const slot: JobSlot = {};
      this.running.set(item, slot);
      void this.opts.run(item, slot);
    }
  }

  /** A started job is over: its slot and its key's lane go back. */
  settle(item: WorkItem): void {
    this.running.delete(item);
    this.slotless.delete(item);
    this.stuck.delete(item);
    this.scheduler.finish(item);
    this.opts.finished(item);
    this.pump();
  }

  /** The job gives its slot up for a while (it keeps its key). */
  releaseSlot(item: WorkItem): void {
    const slot = this.running.get(item);
    if (!slot) return;
    this.running.delete(item);
    this.slotless.set(item, slot);
    // Not from here: the dispatcher may be what started this job; it sees the free slot next tick.
    queueMicrotask(() => this.pump());
  }

  /** A handler overran its timeout twice: counted as stuck, its slot goes to other jobs. */
  markStuck(item: WorkItem): void {
    if (this.stuck.has(item) || !this.running.has(item)) return;
    this.stuck.add(item);
    this.releaseSlot(item);
  }

  holdsSlot(item: WorkItem): boolean {
    return this.running.has(item);
  }

  /**
   * Waits for a free slot for a slotless job (before new jobs get one). Resolves false when the
   * worker stops first.
   */
  reacquireSlot(item: WorkItem): Promise<boolean> {
    if (this.running.has(item)) return Promise.resolve(true);
    this.stuck.delete(item);
    return new Promise<boolean>((admit) => {
      this.reentry.push({ item, admit });
      this.admitWaiting();
    });
  }

  private admitWaiting(): void {
    if (!this.opts.state.canStart) return;
    while (this.reentry.length > 0 && this.running.size < this.opts.concurrency) {
      const next = this.reentry.shift()!;
      const slot = this.slotless.get(next.item) ?? {};
      this.slotless.delete(next.item);
      this.running.set(next.item, slot);
      next.admit(true);
    }
  }

  /** Waiting jobs of a revoked partition leave; started ones finish (uncommitted). */
  dropPartition(tp: string): WorkItem[] {
    return this.scheduler.dropPartition(tp);
  }

  /** Aborts every started job's handler signal (shutdown past its budget). */
  abortAll(reason: unknown): void {
    for (const slot of [...this.running.values(), ...this.slotless.values()]) {
      slot.stopReason = reason;
      slot.attempt?.abort(reason);
    }
  }

  /** Stop: jobs waiting for a slot end without running (uncommitted, redelivered later). */
  releaseWaiting(): void {
    this.opts.clock.clearTimeout(this.limiterTimer);
    for (const waiting of this.reentry.splice(0)) waiting.admit(false);
  }
}
