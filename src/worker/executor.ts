import { DecodeError } from '../codec/errors.js';
import { classifySafely, errorClassName } from '../failure/errors.js';
import type { OutcomeRouter, Route } from '../failure/router.js';
import { HEADERS, headerNumber } from '../headers.js';
import type { HistogramSeries } from '../observability/fast-histogram.js';
import type { Logger } from '../observability/logger.js';
import type { OutcomeCounts, QueueMetrics } from '../observability/metrics.js';
import { ATTR, type TracedSpan } from '../observability/tracing.js';
import type { JobDecoder } from '../ports.js';
import { backoffDelay, retryPolicies } from '../timing/backoff.js';
import type { Clock } from '../timing/clock.js';
import { AttemptTracer } from './attempt-trace.js';
import { BatchCall } from './batch.js';
import type { Dispatcher, JobSlot } from './dispatcher.js';
import type { Emit, WorkerEvents } from './events.js';
import { BadTenantError } from './fairness/options.js';
import { callOne, HandlerDeadlines, type HandlerDeps, runHandler } from './handler-call.js';
import { JobLog } from './job-log.js';
import { JobWaits } from './job-waits.js';
import { Abandoned, IdempotencyKeyError, type LeaseKeeper } from './lease.js';
import type { Job, ResolvedWorkerOptions } from './options.js';
import type { KeyParking } from './parked-keys.js';
import { decide } from './policy.js';
import type { RunState } from './run-state.js';
import { JobView, routing, type WorkItem } from './work-item.js';

/**
 * Runs one started job to an outcome: decode, idempotency lease, handler (with its timeout), and
 * then, on failure, what the retry policy decides — in-place retry, a retry tier or the DLQ, each
 * acknowledged by the broker before the job counts as done.
 */
export class Executor {
  readonly counts: OutcomeCounts;
  private readonly processing: HistogramSeries;
  private readonly endToEnd: HistogramSeries;
  private readonly labels: { topic: string; group: string };
  private readonly tracer: AttemptTracer;
  private batchSizes: HistogramSeries | undefined;
  private readonly handlerDeps: HandlerDeps;
  private readonly waits: JobWaits;
  /** A write an outcome depends on, until acknowledged (job-waits.ts); strict order's writes use it too. */
  readonly durably: JobWaits['durably'];
  private readonly hears: (event: keyof WorkerEvents) => boolean;

  constructor(
    private readonly deps: {
      options: ResolvedWorkerOptions;
      state: RunState;
      clock: Clock;
      logger: Logger;
      metrics: QueueMetrics;
      decoder: JobDecoder;
      router: OutcomeRouter;
      leases: LeaseKeeper | undefined;
      dispatcher: () => Dispatcher;
      followUps?: HandlerDeps['followUps'];
      /** Strict key order (parked-keys.ts); undefined when keys are not parked. */
      parking: () => KeyParking | undefined;
      owns: (item: WorkItem) => boolean;
      /** `owns`, waiting for a just-joined partition to be verified (assignment.ts `confirm`). */
      confirm: (item: WorkItem) => boolean | Promise<boolean>;
      /** The job reached an outcome: its offset counts as done. */
      done: (item: WorkItem) => void;
      /** The job is over (with or without an outcome): its slot, key and buffer space go back. */
      settle: (item: WorkItem) => void;
      emit: Emit;
      /** Whether anyone listens to a per-job event (no event object is made for nobody). */
      hears?: (event: keyof WorkerEvents) => boolean;
      random: () => number;
    },
  ) {
    const { metrics, options } = deps;
    this.labels = { topic: options.topic, group: options.groupId };
    // Per job: plain numbers (flushed into prom-client on scrape) and pre-bound histogram series.
    this.counts = metrics.outcomeCounts(this.labels);
    this.processing = metrics.processingLatency.labels(this.labels);
    this.endToEnd = metrics.endToEndLatency.labels(this.labels);
    this.tracer = new AttemptTracer(options.tracing, options.groupId);
    const { jobTimeoutMs, exactlyOnce } = options;
    const deadlines = jobTimeoutMs > 0 ? new HandlerDeadlines(deps.clock, jobTimeoutMs) : undefined;
    this.handlerDeps = { ...deps, jobTimeoutMs, deadlines, exactlyOnce };
    this.waits = new JobWaits(deps);
    this.durably = this.waits.durably;
    this.hears = deps.hears ?? (() => true);
  }

  /**
   * Runs a started job; never rejects; always ends with `settle`. A job never ends without an
   * outcome while this worker runs and owns it: a fault outside the handler (a bug, or user code
   * the worker calls besides the handler) makes it start over after a backoff, keeping its key's
   * lane, so no later job of its key overtakes it and its offset is never skipped.
   */
  async execute(item: WorkItem, slot: JobSlot): Promise<void> {
    const parking = this.deps.parking();
    // A job starts in a microtask of its own, never inside its starter (the intake's loop, a
    // settle): most jobs need no other await before their handler.
    await undefined;
    try {
      for (let faults = 0; ; faults++) {
        const gate = parking ? parking.gate(item) : 'run';
        // Its key's release is unparking the key: gated again once that ended.
        if (gate === 'closing') {
          await parking!.closed(item);
          continue;
        }
        const span = gate === 'run' ? this.tracer.start(item, item.attempt) : undefined;
        const log = new JobLog(this.deps.logger, item, item.attempt, span);
        try {
          const ended =
            gate === 'run' ? await this.process(item, slot, log) : await parking!.handle(item, slot, gate);
          // Most jobs need nothing more: no promise for them (per-job cost).
          const after = ended && gate === 'run' ? this.afterOutcome(item) : undefined;
          if (after) await after;
          if (ended) this.deps.done(item);
          return;
        } catch (error) {
          if (error instanceof Abandoned) return;
          log.logger.error(
            { err: error, faults: faults + 1 },
            'job failed outside its handler and has no outcome; it starts over (its key waits, its offset stays uncommitted)',
          );
          item.outcome = undefined;
          item.writes = undefined;
          if (!(await this.startOver(item, slot, faults))) return;
        } finally {
          log.end('abandoned');
        }
      }
    } finally {
      this.deps.settle(item);
      slot.batch?.leave(item);
    }
  }

  /** Waits before a job starts over, without its slot; false when it should not (stop, partition lost). */
  private async startOver(item: WorkItem, slot: JobSlot, faults: number): Promise<boolean> {
    const dispatcher = this.deps.dispatcher();
    if (slot.batch && !item.solo) {
      // Its batch's calls go on without it and the jobs behind it in its lane (held until it
      // ends); it runs alone, in the batch's slot.
      item.solo = true;
      slot.batch.park(item);
    } else dispatcher.releaseSlot(item);
    try {
      await this.waits.wait(item)(backoffDelay(retryPolicies.fault, faults, this.deps.random));
      await this.waits.holdSlot(item);
      return true;
    } catch {
      return false;
    }
  }

  /** Runs a job released from parking (strict key order) in its release's slot; sets its `outcome`. */
  async runReleased(item: WorkItem, slot: JobSlot): Promise<void> {
    const log = new JobLog(this.deps.logger, item, item.attempt, this.tracer.start(item, item.attempt));
    try {
      if (!(await this.process(item, slot, log))) item.outcome = undefined;
      else await this.afterOutcome(item);
    } finally {
      log.end('abandoned');
    }
  }

  /** What an outcome means for strict key order, written before the offset is done (most: nothing). */
  private afterOutcome(item: WorkItem): Promise<void> | undefined {
    const parking = this.deps.parking();
    // Sent to a tier: its key waits behind it.
    if (item.outcome === 'tier') return parking?.parks(item) ? parking.park(item) : undefined;
    // The head of a parked key ended: its key is released (on whichever worker owns it).
    if (item.tier > 0 && item.rawHeaders?.[HEADERS.parksKey] !== undefined) {
      const outcome = item.outcome === 'dlq' ? 'dead' : 'completed';
      return this.waits
        .durably(item, () => this.deps.router.toRelease(item, item.jobId, outcome))
        .then(() => parking?.releaseNow(item, outcome));
    }
    return undefined;
  }

  /** Runs a started batch: each job on its own path, one batch handler call for them (batch.ts). */
  executeBatch(items: readonly WorkItem[], slot: JobSlot): void {
    const { options, state, metrics, logger } = this.deps;
    this.batchSizes ??= metrics.batchSize.labels(this.labels);
    slot.batch = new BatchCall(items, slot, {
      handler: options.batchHandler!,
      invoke: (item, s, log, call, jobs) => runHandler(this.handlerDeps, item, s, log, call, jobs),
      confirm: this.deps.confirm,
      holdsSlot: (item) => this.deps.dispatcher().holdsSlot(item),
      releaseSlot: (item) => this.deps.dispatcher().releaseSlot(item),
      reacquireSlot: (item) => this.deps.dispatcher().reacquireSlot(item),
      state,
      sizes: this.batchSizes,
      logger,
    });
    for (const item of items) void this.execute(item, slot);
  }

  private failure(errorClass: string): void {
    this.deps.metrics.failures.inc({ ...this.labels, error_class: errorClass });
  }

  /** Runs the item to an outcome. Returns true when its offset may count as done. */
  private async process(item: WorkItem, slot: JobSlot, log: JobLog): Promise<boolean> {
    const { options: o, state, leases, emit, router } = this.deps;
    let data: unknown;
    try {
      // Most records: a cached writer schema, decoded now (no promise, per-job cost).
      const now = this.waits.decodeNow(item);
      data = now ? now.data : await this.waits.decode(item, log);
    } catch (error) {
      if (!(error instanceof DecodeError)) throw error;
      log.logger.warn(
        { reason: error.reason, bytes: error.byteLength, schemaId: error.schemaId },
        `undecodable record: ${error.message}`,
      );
      this.failure('DecodeError');
      log.fail(error);
      const reason = `undecodable:${error.reason}`;
      await this.route(item, error, log, (span) => router.toDlq(item, error, item.attempt, reason, span));
      log.end('dead_lettered', { [ATTR.deadReason]: reason });
      this.counts.dead_lettered++;
      emit('job:dead', item, error);
      item.outcome = 'dlq';
      return true;
    }

    let attempt = item.attempt;
    let inPlaceUsed = 0;
    const enqueuedAt = headerNumber(item.rawHeaders, HEADERS.enqueuedAt);
    for (;;) {
      if (!this.waits.slotHeld(item)) await this.waits.holdSlot(item);
      const job: Job<unknown> = new JobView(item, data, attempt, enqueuedAt);
      // A batch's jobs take their leases in lane order and do not hold their batch up while the
      // lease is held elsewhere (batch.ts).
      // A released job (strict key order) runs alone, in its release's slot.
      const batch = item.released || item.solo ? undefined : slot.batch;
      let lease: 'acquired' | 'completed' | 'none' = 'none';
      // A job whose idempotency key cannot be computed is not run: it goes to the DLQ with why.
      let keyError: IdempotencyKeyError | BadTenantError | undefined =
        item.tenantError === undefined ? undefined : new BadTenantError(item.tenantError);
      if (leases && !keyError) {
        if (batch) await batch.leaseTurn(item);
        try {
          lease = await leases.acquire(
            item,
            job,
            log,
            this.waits.wait(item),
            batch && (() => batch.park(item)),
          );
        } catch (error) {
          if (!(error instanceof IdempotencyKeyError)) throw error;
          keyError = error;
        }
      }
      batch?.leased(item);
      if (lease === 'completed') {
        this.counts.duplicate++;
        log.logger.info('duplicate job id: handler skipped');
        log.end('duplicate');
        emit('job:duplicate', job);
        item.outcome = 'duplicate';
        return true;
      }
      const error = keyError ?? (await this.attempt(item, slot, job, lease, batch, log));
      if (error === undefined) return true;
      log.fail(error);
      if (lease === 'acquired') await leases!.release(item, job);
      if (!state.running && state.stopSignal.aborted) {
        emit('job:failed', job, error, { next: 'abandoned', attempt });
        throw new Abandoned();
      }
      const kind = classifySafely(o.classify, error, (fault) =>
        log.logger.error(
          { err: fault, original: errorClassName(error) },
          'the classify hook failed; the job is treated as retriable',
        ),
      );
      const errorClass = errorClassName(error);
      this.failure(errorClass);
      const decision = decide(
        {
          kind,
          requestedDelayMs: (error as { delayMs?: unknown }).delayMs as number | undefined,
          attempt,
          fromTier: item.tier,
          inPlaceUsed,
          retryLaterCount: Number(item.headers[HEADERS.retryLater] ?? 0) || 0,
        },
        o.retry,
        this.deps.random,
      );
      if (decision.action === 'in-place') {
        emit('job:failed', job, error, { next: 'in-place', attempt });
        log.logger.info({ err: error, delayMs: decision.delayMs }, 'job failed; retrying in place');
        inPlaceUsed++;
        log.end('retried');
        await this.waits.wait(item)(decision.delayMs);
        attempt = decision.nextAttempt;
        log.next(attempt, this.tracer.start(item, attempt));
        continue;
      }
      if (decision.action === 'dlq') {
        log.logger.warn(
          { err: error, errorClass, reason: decision.reason },
          'job failed; sending it to the dead-letter topic',
        );
        emit('job:failed', job, error, { next: 'dlq', attempt });
        const reason = error instanceof BadTenantError ? 'bad-tenant' : decision.reason;
        await this.route(item, error, log, (span) => router.toDlq(item, error, attempt, reason, span));
        log.end('dead_lettered', { [ATTR.deadReason]: reason });
        this.counts.dead_lettered++;
        emit('job:dead', item, error);
        item.outcome = 'dlq';
        return true;
      }
      emit('job:failed', job, error, { next: 'tier', attempt });
      log.logger.info({ err: error, tier: decision.tier }, 'job failed; sending it to a retry tier');
      const parks = this.deps.parking()?.parks(item) ?? false;
      const route = await this.route(item, error, log, (span) =>
        router.toTier(item, error, decision, span, parks),
      );
      log.end('retried', { [ATTR.nextTier]: decision.tier });
      this.deps.metrics.retries.inc({ ...this.labels, tier: String(decision.tier) });
      this.counts.retried++;
      if (route.kind === 'tier') emit('job:retried', job, route);
      item.outcome = 'tier';
      return true;
    }
  }

  /**
   * One handler attempt of a started job: the handler (or its batch's call) with its lease kept
   * alive; on success the done marker and the completion. Returns the failure, or undefined.
   */
  private async attempt(
    item: WorkItem,
    slot: JobSlot,
    job: Job<unknown>,
    lease: 'acquired' | 'none',
    batch: BatchCall | undefined,
    log: JobLog,
  ): Promise<unknown> {
    const { leases, emit, clock, state } = this.deps;
    const stopRenewal = lease === 'acquired' ? leases!.keepAlive(item, job, log) : undefined;
    let error: unknown;
    let started = 0;
    try {
      // Paused or draining while it waited for its lease: it waits again, without its slot.
      if (!batch && !state.canStart) await this.waits.holdSlot(item);
      // The partition may have been lost while the job decoded or waited for its lease.
      const confirmed = this.deps.confirm(item);
      if (confirmed !== true && !(await confirmed)) throw new Abandoned();
      if (this.hears('job:started')) emit('job:started', job);
      started = clock.now();
      // A batch's job waits for the batch's call and gets its own result; the call may not
      // happen for it (partition lost, stop): Abandoned (batch.ts).
      error = batch
        ? await batch.submit(item, job)
        : await runHandler(this.handlerDeps, item, slot, log, (ctx) => callOne(this.deps.options, job, ctx));
    } finally {
      stopRenewal?.();
    }
    const ended = clock.now();
    const ms = ended - started;
    this.processing.observe(ms / 1000);
    if (error !== undefined) return error;
    // The side effect happened: the done marker is written even if the partition moved on
    // meanwhile (it lets the new owner skip the job); only a stop past its budget gives up.
    const wait = this.waits.waitWhileRunning;
    if (lease === 'acquired') await leases!.done(item, job, log, wait, this.deps.options.exactlyOnce);
    this.counts.completed++;
    log.end('completed');
    if (job.enqueuedAt) {
      const now = lease === 'acquired' ? clock.now() : ended;
      this.endToEnd.observe(Math.max(0, now - job.enqueuedAt) / 1000);
    }
    if (this.hears('job:completed')) emit('job:completed', job, { durationMs: ms });
    item.outcome = 'completed';
    return undefined;
  }

  /** Sends to a tier or the DLQ, again until acknowledged (or the worker stops, or loses the partition). */
  private route(
    item: WorkItem,
    error: unknown,
    log: JobLog,
    send: (span: TracedSpan | undefined) => Promise<Route>,
  ): Promise<Route> {
    return this.waits.durably(
      item,
      () => routing(item, send(log.span)),
      (sendError) =>
        log.logger.warn(
          { err: sendError, original: errorClassName(error) },
          'could not publish the failed job; retrying',
        ),
    );
  }
}
