import { DecodeError } from '../codec/errors.js';
import { defaultClassify, errorClassName } from '../failure/errors.js';
import type { OutcomeRouter, Route } from '../failure/router.js';
import { HEADERS, headerString } from '../headers.js';
import type { HistogramSeries } from '../observability/fast-histogram.js';
import type { Logger } from '../observability/logger.js';
import type { OutcomeCounts, QueueMetrics } from '../observability/metrics.js';
import { ATTR, type TracedSpan } from '../observability/tracing.js';
import type { JobDecoder } from '../ports.js';
import { retryWithBackoff } from '../timing/backoff.js';
import { type Clock, sleep } from '../timing/clock.js';
import { AttemptTracer } from './attempt-trace.js';
import { BatchCall } from './batch.js';
import type { WorkerEvents } from './core.js';
import type { Dispatcher, JobSlot } from './dispatcher.js';
import { type HandlerDeps, runHandler } from './handler-call.js';
import { JobLog } from './job-log.js';
import { Abandoned, type LeaseKeeper } from './lease.js';
import type { Job, JobContext, ResolvedWorkerOptions } from './options.js';
import type { KeyParking } from './parked-keys.js';
import { decide } from './policy.js';
import type { RunState } from './run-state.js';
import type { WorkItem } from './work-item.js';

type Emit = <E extends keyof WorkerEvents>(event: E, ...args: WorkerEvents[E]) => void;

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
    this.handlerDeps = { jobTimeoutMs: options.jobTimeoutMs, clock: deps.clock, dispatcher: deps.dispatcher };
  }

  /** Runs a started job; never rejects; always ends with `settle`. */
  async execute(item: WorkItem, slot: JobSlot): Promise<void> {
    const parking = this.deps.parking();
    const gate = parking ? parking.gate(item) : 'run';
    const span = gate === 'run' ? this.tracer.start(item, item.attempt) : undefined;
    const log = new JobLog(this.deps.logger, item, item.attempt, span);
    try {
      const ended =
        gate === 'run' ? await this.process(item, slot, log) : await parking!.handle(item, slot, gate);
      // Most jobs need nothing more: no promise for them (per-job cost).
      const after = ended && gate === 'run' ? this.afterOutcome(item) : undefined;
      if (after) await after;
      if (ended) this.deps.done(item);
    } catch (error) {
      if (!(error instanceof Abandoned))
        log.logger.error({ err: error }, 'job ended without an outcome; it stays uncommitted');
    } finally {
      log.end('abandoned');
      this.deps.settle(item);
      slot.batch?.leave(item);
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
    if (item.outcome === 'tier')
      return parking?.parks(item) ? this.durably(item, () => parking.state.park(item)) : undefined;
    // The head of a parked key ended: its key is released (on whichever worker owns it).
    if (item.tier > 0 && item.rawHeaders?.[HEADERS.parksKey] !== undefined) {
      const outcome = item.outcome === 'dlq' ? 'dead' : 'completed';
      return this.durably(item, () => this.deps.router.toRelease(item, item.jobId, outcome)).then(() =>
        parking?.releaseNow(item, outcome),
      );
    }
    return undefined;
  }

  /** Runs a started batch: each job on its own path, one batch handler call for them (batch.ts). */
  executeBatch(items: readonly WorkItem[], slot: JobSlot): void {
    const { options, state, metrics, logger } = this.deps;
    this.batchSizes ??= metrics.batchSize.labels(this.labels);
    slot.batch = new BatchCall(items, slot, {
      handler: options.batchHandler!,
      invoke: (item, s, log, call) => runHandler(this.handlerDeps, item, s, log, call),
      confirm: this.deps.confirm,
      holdsSlot: (item) => this.deps.dispatcher().holdsSlot(item),
      reacquireSlot: (item) => this.deps.dispatcher().reacquireSlot(item),
      state,
      sizes: this.batchSizes,
      logger,
    });
    for (const item of items) void this.execute(item, slot);
  }

  /** Waits while the worker runs and owns the item; throws `Abandoned` when it should not go on. */
  private readonly wait = (item: WorkItem) => async (ms: number) => {
    const { state, clock } = this.deps;
    await sleep(clock, ms, state.stopSignal);
    if (!state.running || !(await this.deps.confirm(item))) throw new Abandoned();
  };

  private readonly waitWhileRunning = async (ms: number) => {
    const { state, clock } = this.deps;
    await sleep(clock, ms, state.stopSignal);
    if (state.stopSignal.aborted) throw new Abandoned();
  };

  private failure(errorClass: string): void {
    this.deps.metrics.failures.inc({ ...this.labels, error_class: errorClass });
  }

  /**
   * Decodes the record. While its writer schema cannot be fetched (registry down) the job waits
   * without its slot — it keeps its key, so order holds, and jobs whose schemas are cached keep
   * running — and takes a slot again before its handler runs.
   */
  private async decode(item: WorkItem, log: JobLog): Promise<unknown> {
    const { decoder, dispatcher } = this.deps;
    // Most records: a cached writer schema, decoded without a promise.
    const cached = decoder.decodeCached?.(item.value);
    if (cached) return cached.data;
    // A schema not in memory means a registry call, which may take the registry's whole retry
    // budget when it is down: the job gives its slot up for that time.
    if (!decoder.decodesLocally(item.value)) dispatcher().releaseSlot(item);
    const { data } = await retryWithBackoff('registry', () => decoder.decode(item.value), {
      onError: (error, n) => {
        if (error instanceof DecodeError) throw error;
        if (n % 10 === 0)
          log.logger.warn(
            { err: error },
            'writer schema unavailable; the job waits and retries (not dead-lettered)',
          );
        dispatcher().releaseSlot(item);
      },
      wait: this.wait(item),
      random: this.deps.random,
    });
    return data;
  }

  /** Runs the item to an outcome. Returns true when its offset may count as done. */
  private async process(item: WorkItem, slot: JobSlot, log: JobLog): Promise<boolean> {
    const { options: o, state, leases, emit, clock, router } = this.deps;
    let data: unknown;
    try {
      data = await this.decode(item, log);
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
    const enqueued = headerString(item.rawHeaders, HEADERS.enqueuedAt);
    const enqueuedAt = enqueued ? Number(enqueued) : undefined;
    for (;;) {
      await this.holdSlot(item);
      const job: Job<unknown> = {
        id: item.jobId,
        key: item.key,
        data,
        attempt,
        // Parsed only if the handler reads them.
        get headers() {
          return item.headers;
        },
        topic: item.topic,
        partition: item.partition,
        offset: item.offset,
        enqueuedAt,
      };
      // A batch's jobs take their leases in lane order and do not hold their batch up while the
      // lease is held elsewhere (batch.ts).
      // A released job (strict key order) runs alone, in its release's slot.
      const batch = item.released ? undefined : slot.batch;
      if (leases && batch) await batch.leaseTurn(item);
      const lease = leases
        ? await leases.acquire(item, job, log, this.wait(item), batch && (() => batch.park(item)))
        : 'none';
      batch?.leased(item);
      if (lease === 'completed') {
        this.counts.duplicate++;
        log.logger.info('duplicate job id: handler skipped');
        log.end('duplicate');
        emit('job:duplicate', job);
        item.outcome = 'duplicate';
        return true;
      }
      // The partition may have been lost while the job decoded or waited for its lease.
      const confirmed = this.deps.confirm(item);
      if (confirmed !== true && !(await confirmed)) throw new Abandoned();
      emit('job:started', job);
      const started = clock.now();
      const stopRenewal = lease === 'acquired' ? leases!.keepAlive(item, job, log) : undefined;
      let error: unknown;
      try {
        // A batch's job waits for the batch's call and gets its own result; the call may not
        // happen for it (partition lost, stop): Abandoned (batch.ts).
        error = batch
          ? await batch.submit(item, job)
          : await runHandler(this.handlerDeps, item, slot, log, (ctx) => this.single(job, ctx));
      } finally {
        stopRenewal?.();
      }
      const ms = clock.now() - started;
      this.processing.observe(ms / 1000);
      if (error === undefined) {
        // The side effect happened: the done marker is written even if the partition moved on
        // meanwhile (it lets the new owner skip the job); only a stop past its budget gives up.
        if (lease === 'acquired') await leases!.finish(item, job, log, this.waitWhileRunning);
        this.counts.completed++;
        log.end('completed');
        if (job.enqueuedAt) this.endToEnd.observe(Math.max(0, clock.now() - job.enqueuedAt) / 1000);
        emit('job:completed', job, { durationMs: ms });
        item.outcome = 'completed';
        return true;
      }
      log.fail(error);
      if (lease === 'acquired') await leases!.release(item, job);
      if (!state.running && state.stopSignal.aborted) {
        emit('job:failed', job, error, { next: 'abandoned', attempt });
        throw new Abandoned();
      }
      const kind = o.classify?.(error) ?? defaultClassify(error);
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
        await this.wait(item)(decision.delayMs);
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
        await this.route(item, error, log, (span) =>
          router.toDlq(item, error, attempt, decision.reason, span),
        );
        log.end('dead_lettered', { [ATTR.deadReason]: decision.reason });
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

  /** A job without a slot (it waited for the registry, or was stuck) takes one before its handler runs. */
  private async holdSlot(item: WorkItem): Promise<void> {
    const dispatcher = this.deps.dispatcher();
    if (dispatcher.holdsSlot(item)) return;
    const admitted = await dispatcher.reacquireSlot(item);
    if (!admitted || !this.deps.state.running || !this.deps.owns(item)) throw new Abandoned();
  }

  /** Sends to a tier or the DLQ, again until acknowledged (or the worker stops, or loses the partition). */
  private route(
    item: WorkItem,
    error: unknown,
    log: JobLog,
    send: (span: TracedSpan | undefined) => Promise<Route>,
  ): Promise<Route> {
    return this.durably(
      item,
      () => send(log.span),
      (sendError) =>
        log.logger.warn(
          { err: sendError, original: errorClassName(error) },
          'could not publish the failed job; retrying',
        ),
    );
  }

  /**
   * A write an outcome depends on, again until acknowledged; throws `Abandoned` when the worker
   * stops or the item's partition left (its new owner redoes the job: writing it too would
   * duplicate the outcome), before or during the write.
   */
  readonly durably = async <T>(
    item: WorkItem,
    send: () => Promise<T>,
    onError: (error: unknown) => void = (error) =>
      this.deps.logger.warn({ err: error, tp: item.tp, offset: item.offset }, 'write failed; retrying'),
  ): Promise<T> => {
    if (!(await this.deps.confirm(item))) throw new Abandoned();
    const result = await retryWithBackoff('produce', send, {
      onError,
      wait: this.wait(item),
      random: this.deps.random,
    });
    // Written, but the partition left meanwhile: not an outcome of this ownership (at least once).
    if (!(await this.deps.confirm(item))) throw new Abandoned();
    return result;
  };

  /** One job's handler call: `handler`, or a `batchHandler` with this job alone (a released job). */
  private single(job: Job<unknown>, ctx: JobContext): unknown {
    const { handler, batchHandler } = this.deps.options;
    if (handler) return handler(job as never, ctx);
    return Promise.resolve(batchHandler!([job] as never, ctx)).then((result) => {
      const failed = (result as { failed?: { error: unknown }[] } | undefined)?.failed?.[0];
      if (failed) throw failed.error;
    });
  }
}
