import { normalizeThrown } from '../failure/errors.js';
import type { HistogramSeries } from '../observability/fast-histogram.js';
import type { Logger } from '../observability/logger.js';
import type { JobSlot } from './dispatcher.js';
import { type CallJobs, keepFollowUps } from './handler-call.js';
import { Abandoned } from './lease.js';
import type { BatchContext, BatchHandler, BatchResult, Job } from './options.js';
import type { RunState } from './run-state.js';
import type { WorkItem } from './work-item.js';

/** A job that reached its handler step, waiting for the batch's call and its own result. */
interface Submission {
  readonly item: WorkItem;
  readonly job: Job<unknown>;
  readonly resolve: (error: unknown) => void;
  readonly reject: (error: unknown) => void;
}

/** A batch's logger, made on first use (ctx.logger of the batch handler). */
class BatchLog {
  private made: Logger | undefined;
  constructor(
    private readonly base: Logger,
    private readonly bindings: Record<string, unknown>,
  ) {}
  get logger(): Logger {
    this.made ??= this.base.child(this.bindings);
    return this.made;
  }
}

export interface BatchCallDeps {
  readonly handler: BatchHandler<never>;
  /** Runs a handler call with the attempt signal and `jobTimeoutMs` (the executor's `runHandler`). */
  readonly invoke: (
    item: WorkItem,
    slot: JobSlot,
    log: { readonly logger: Logger },
    call: (ctx: BatchContext<unknown>) => unknown,
    jobs: CallJobs,
  ) => Promise<unknown>;
  /** `Assignment.confirm`: still this ownership's partition (waiting for a just-joined one's check). */
  readonly confirm: (item: WorkItem) => boolean | Promise<boolean>;
  /** The dispatcher's: does the batch hold its slot, and take it back (false: the worker stops). */
  readonly holdsSlot: (item: WorkItem) => boolean;
  readonly releaseSlot: (item: WorkItem) => void;
  readonly reacquireSlot: (item: WorkItem) => Promise<boolean>;
  readonly state: RunState;
  readonly sizes: HistogramSeries;
  readonly logger: Logger;
}

/**
 * The handler step of a batch's jobs. Every job of the batch runs its own path in the executor
 * (decode, lease, then policy and routing of its own outcome); at the handler step it `submit`s
 * and waits. Once every job of the batch not yet ended has submitted (a job ends early as a
 * duplicate, an undecodable record, or when its partition was lost), the batch handler is called
 * once with the submitted jobs, in offset order, and each gets its own result: undefined
 * (completed), its error from `{ failed }`, or the error the call threw.
 *
 * Jobs retried in place submit again after their backoff and run in the next call of the same
 * batch, again together once every job still open is back or ended: calls of one batch never
 * overlap, so two jobs of one key are never in two calls at once, and keep their offset order.
 * A job waiting for an idempotency lease held elsewhere is parked (`park`): the call goes on
 * without it and the jobs behind it in its lane, which join a later call.
 */
export class BatchCall {
  /** Jobs of the batch that have not ended. */
  private readonly open: Set<WorkItem>;
  /** Jobs waiting for the next call. */
  private round: Submission[] = [];
  private calling = false;
  /** Jobs waiting for an idempotency lease another holder has (they hold no lease themselves). */
  private readonly parked = new Set<WorkItem>();
  /** Jobs past their first lease step, and jobs waiting for their turn to take a lease. */
  private readonly leasedOnce = new Set<WorkItem>();
  private turns: { item: WorkItem; go: () => void }[] = [];

  constructor(
    items: readonly WorkItem[],
    private readonly slot: JobSlot,
    private readonly deps: BatchCallDeps,
  ) {
    this.open = new Set(items);
  }

  /** The job's handler step: resolves with its error, or undefined when it completed. */
  submit(item: WorkItem, job: Job<unknown>): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.round.push({ item, job, resolve, reject });
      this.callWhenComplete();
    });
  }

  /** The job ended (with or without reaching the handler step). */
  leave(item: WorkItem): void {
    this.parked.delete(item);
    if (this.open.delete(item)) {
      this.wakeTurns();
      this.callWhenComplete();
    }
  }

  /**
   * Leases are taken in lane order within a batch: a job waits until the jobs ahead of it in its
   * lane took theirs (or ended), so no job holds a lease behind a parked one of its lane — which
   * could leave two batches each holding a lease the other waits for. Undefined: go now.
   */
  leaseTurn(item: WorkItem): Promise<void> | undefined {
    if (this.mayLease(item)) return undefined;
    return new Promise((go) => this.turns.push({ item, go }));
  }

  /** The job's lease step is over (acquired, or a duplicate). */
  leased(item: WorkItem): void {
    this.leasedOnce.add(item);
    this.unpark(item);
    this.wakeTurns();
  }

  private mayLease(item: WorkItem): boolean {
    if (item.lane === undefined || this.leasedOnce.has(item)) return true;
    for (const m of this.open)
      if (m !== item && m.lane === item.lane && m.seq < item.seq && !this.leasedOnce.has(m)) return false;
    return true;
  }

  private wakeTurns(): void {
    if (this.turns.length === 0) return;
    const waiting = this.turns;
    this.turns = [];
    for (const t of waiting) {
      if (this.mayLease(t.item)) t.go();
      else this.turns.push(t);
    }
  }

  /**
   * The job waits for its idempotency lease, held elsewhere (another worker, another batch, or a
   * job of this batch with the same id). Waiting for it inside the batch would hold the leases the
   * batch's other jobs took, and two batches could each wait for the other: so the job, with the
   * jobs behind it in its lane (they keep their order), stops counting for the next call until
   * `unpark`; the rest of the batch is called without them.
   */
  park(item: WorkItem): void {
    if (this.open.has(item) && !this.parked.has(item)) {
      this.parked.add(item);
      this.callWhenComplete();
    }
  }

  unpark(item: WorkItem): void {
    if (this.parked.delete(item)) this.callWhenComplete();
  }

  /** Behind a parked job of its lane (key, or partition), so not called before it. */
  private heldBack(item: WorkItem): boolean {
    for (const p of this.parked)
      if (p === item || (p.lane !== undefined && p.lane === item.lane && p.seq < item.seq)) return true;
    // Waiting for its turn to take a lease behind a parked job (it holds none).
    return this.turns.some((t) => t.item === item);
  }

  private callWhenComplete(): void {
    if (this.calling || this.round.length === 0) return;
    let batch = this.round;
    if (this.parked.size === 0) {
      if (batch.length < this.open.size) return;
      this.round = [];
    } else {
      // Every open job submitted, or waits for a lease (itself or ahead of it in its lane).
      const submitted = new Set(batch.map((s) => s.item));
      for (const item of this.open) if (!submitted.has(item) && !this.heldBack(item)) return;
      batch = batch.filter((s) => !this.heldBack(s.item));
      if (batch.length === 0) return;
      this.round = this.round.filter((s) => this.heldBack(s.item));
    }
    batch.sort((a, b) => a.item.seq - b.item.seq);
    this.calling = true;
    this.call(batch)
      // A settled submission ignores this; the others end without an outcome (logged by the executor).
      .catch((error: unknown) => {
        for (const s of batch) s.reject(error);
      })
      .finally(() => {
        this.calling = false;
        this.callWhenComplete();
      });
  }

  private async call(batch: Submission[]): Promise<void> {
    const { confirm, state, invoke, handler } = this.deps;
    // Every job's partition is checked in the tick the handler starts in (as a single job's is):
    // a job whose partition was lost or re-joined meanwhile must not run for this ownership. The
    // batch runs in its slot, which one of its jobs may have given up (registry wait) after the
    // others took it back.
    let jobs = batch;
    for (;;) {
      const first = jobs[0];
      if (first && !this.deps.holdsSlot(first.item)) {
        if (!(await this.deps.reacquireSlot(first.item)) || !state.running) {
          for (const s of jobs) s.reject(new Abandoned());
          return;
        }
        continue;
      }
      // A call of in-place retries (or a first call whose jobs waited) starts only while jobs may
      // start: paused or draining, the batch gives its slot back and waits (as a single job does).
      if (first && !state.canStart && state.phase !== 'stopping') {
        this.deps.releaseSlot(first.item);
        continue;
      }
      const waits: Promise<boolean>[] = [];
      const kept: Submission[] = [];
      for (const s of jobs) {
        const owned = confirm(s.item);
        if (owned === false) s.reject(new Abandoned());
        else {
          kept.push(s);
          if (owned !== true) waits.push(owned);
        }
      }
      jobs = kept;
      if (waits.length === 0) break;
      await Promise.all(waits);
    }
    if (jobs.length === 0) return;
    if (state.stopSignal.aborted) {
      for (const s of jobs) s.reject(new Abandoned());
      return;
    }
    this.deps.sizes.observe(jobs.length);
    const first = jobs[0]!.item;
    const log = new BatchLog(this.deps.logger, { topic: first.topic, batchSize: jobs.length });
    let result: BatchResult<never> | undefined;
    const handed = jobs.map((s) => s.job) as Job<never>[];
    // Exactly once: each job's follow-ups (`ctx.enqueue(…, { for: job })`), kept if it completes.
    const call: CallJobs = { jobs, staged: new Map() };
    const error = await invoke(
      first,
      this.slot,
      log,
      async (ctx) => {
        result = (await handler(handed, ctx)) ?? undefined;
      },
      call,
    );
    if (error !== undefined) {
      for (const s of jobs) s.resolve(error);
      return;
    }
    let failed: Map<Submission, unknown>;
    try {
      failed = this.failures(result, jobs, log);
    } catch {
      // A result whose getters throw (a proxy, a broken object): every job of the call failed.
      const error = new TypeError('batch handler returned a result that cannot be read');
      failed = new Map(jobs.map((s) => [s, error]));
    }
    for (const s of jobs) {
      const jobError = failed.get(s);
      if (jobError === undefined) keepFollowUps(s.item, call.staged);
      s.resolve(jobError);
    }
  }

  /** The `{ failed }` a batch handler returned, per submission (a job is found by identity or offset). */
  private failures(
    result: BatchResult<never>,
    jobs: readonly Submission[],
    log: BatchLog,
  ): Map<Submission, unknown> {
    const out = new Map<Submission, unknown>();
    const list = (result as { failed?: unknown } | undefined)?.failed;
    if (list === undefined || list === null) return out;
    if (!Array.isArray(list)) {
      const error = new TypeError('batch handler returned { failed } that is not an array');
      for (const s of jobs) out.set(s, error);
      return out;
    }
    const byJob = new Map<unknown, Submission>();
    const byOffset = new Map<string, Submission>();
    for (const s of jobs) {
      byJob.set(s.job, s);
      byOffset.set(`${s.job.topic}:${s.job.partition}@${s.job.offset}`, s);
    }
    for (const f of list as { job?: Job<unknown>; error?: unknown }[]) {
      const j = f?.job;
      const s = byJob.get(j) ?? (j ? byOffset.get(`${j.topic}:${j.partition}@${j.offset}`) : undefined);
      if (!s) {
        log.logger.warn(
          { jobId: j?.id },
          'batch handler reported a failed job that is not in its batch; ignored',
        );
        continue;
      }
      out.set(s, normalizeThrown(f.error ?? new Error('the batch handler reported this job failed')));
    }
    return out;
  }
}
