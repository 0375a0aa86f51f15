import type { HistogramSeries } from '../observability/fast-histogram.js';
import type { Logger } from '../observability/logger.js';
import type { JobSlot } from './dispatcher.js';
import { Abandoned } from './lease.js';
import type { BatchHandler, BatchResult, Job, JobContext } from './options.js';
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
    call: (ctx: JobContext) => unknown,
  ) => Promise<unknown>;
  /** `Assignment.confirm`: still this ownership's partition (waiting for a just-joined one's check). */
  readonly confirm: (item: WorkItem) => boolean | Promise<boolean>;
  readonly state: RunState;
  readonly sizes: HistogramSeries;
  readonly logger: Logger;
}

/**
 * The handler step of a batch's jobs. Every job of the batch runs its own path in the executor
 * (decode, lease, then policy and routing of its own outcome); at the handler step it `submit`s
 * and waits. Once every job of the batch submitted or left (a duplicate, an undecodable record, a
 * lost partition), the batch handler is called once with the submitted jobs, in offset order, and
 * each gets its own result: undefined (completed), its error from `{ failed }`, or the error the
 * call threw. A job retried in place submits again after the call: it runs in a call of its own,
 * still within the batch's slot, and its key is held until then.
 */
export class BatchCall {
  private readonly members: Set<WorkItem>;
  private submitted: Submission[] = [];
  private called = false;

  constructor(
    items: readonly WorkItem[],
    private readonly slot: JobSlot,
    private readonly deps: BatchCallDeps,
  ) {
    this.members = new Set(items);
  }

  /** The job's handler step: resolves with its error, or undefined when it completed. */
  submit(item: WorkItem, job: Job<unknown>): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const submission = { item, job, resolve, reject };
      if (this.called || !this.members.has(item)) {
        void this.call([submission]);
        return;
      }
      this.members.delete(item);
      this.submitted.push(submission);
      this.callWhenComplete();
    });
  }

  /** The job ended (it may never have reached the handler step). */
  leave(item: WorkItem): void {
    if (this.members.delete(item)) this.callWhenComplete();
  }

  private callWhenComplete(): void {
    if (this.called || this.members.size > 0) return;
    this.called = true;
    const batch = this.submitted;
    this.submitted = [];
    if (batch.length > 0) void this.call(batch);
  }

  private async call(batch: Submission[]): Promise<void> {
    const { confirm, state, invoke, handler } = this.deps;
    // Every job's partition is checked in the tick the handler starts in (as a single job's is):
    // a job whose partition was lost or re-joined meanwhile must not run for this ownership.
    let jobs = batch;
    for (;;) {
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
    let result: BatchResult<never> | void;
    const handed = jobs.map((s) => s.job) as Job<never>[];
    const error = await invoke(first, this.slot, log, async (ctx) => {
      result = await handler(handed, ctx);
    });
    if (error !== undefined) {
      for (const s of jobs) s.resolve(error);
      return;
    }
    const failed = this.failures(result, jobs, log);
    for (const s of jobs) s.resolve(failed.get(s));
  }

  /** The `{ failed }` a batch handler returned, per submission (a job is found by identity or offset). */
  private failures(
    result: BatchResult<never> | void,
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
        log.logger.warn({ jobId: j?.id }, 'batch handler reported a failed job that is not in its batch; ignored');
        continue;
      }
      out.set(s, f.error ?? new Error('the batch handler reported this job failed'));
    }
    return out;
  }
}
