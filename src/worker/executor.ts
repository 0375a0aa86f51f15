import { DecodeError } from '../codec/errors.js';
import { defaultClassify, errorClassName, JobTimeoutError } from '../failure/errors.js';
import type { OutcomeRouter, Route } from '../failure/router.js';
import { HEADERS, headerString } from '../headers.js';
import type { HistogramSeries } from '../observability/fast-histogram.js';
import type { Logger } from '../observability/logger.js';
import type { OutcomeCounts, QueueMetrics } from '../observability/metrics.js';
import { ATTR, NOOP_SPAN, type TracedSpan } from '../observability/tracing.js';
import type { JobDecoder } from '../ports.js';
import { retryWithBackoff } from '../timing/backoff.js';
import { type Clock, sleep } from '../timing/clock.js';
import { AttemptTracer } from './attempt-trace.js';
import { BatchCall } from './batch.js';
import type { WorkerEvents } from './core.js';
import { AttemptSignal, type Dispatcher, type JobSlot } from './dispatcher.js';
import { JobLog } from './job-log.js';
import { Abandoned, type LeaseKeeper } from './lease.js';
import type { Job, JobContext, ResolvedWorkerOptions } from './options.js';
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
  private readonly counts: OutcomeCounts;
  private readonly processing: HistogramSeries;
  private readonly endToEnd: HistogramSeries;
  private readonly labels: { topic: string; group: string };
  private readonly tracer: AttemptTracer;
  private batchSizes: HistogramSeries | undefined;

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
  }

  /** Runs a started job; never rejects; always ends with `settle`. */
  async execute(item: WorkItem, slot: JobSlot): Promise<void> {
    const log = new JobLog(this.deps.logger, item, item.attempt, this.tracer.start(item, item.attempt));
    try {
      if (await this.process(item, slot, log)) this.deps.done(item);
    } catch (error) {
      if (!(error instanceof Abandoned))
        log.logger.error({ err: error }, 'job ended without an outcome; it stays uncommitted');
    } finally {
      log.end('abandoned');
      this.deps.settle(item);
      slot.batch?.leave(item);
    }
  }

  /** Runs a started batch: each job on its own path, one batch handler call for them (batch.ts). */
  executeBatch(items: readonly WorkItem[], slot: JobSlot): void {
    const { options, state, metrics, logger } = this.deps;
    this.batchSizes ??= metrics.batchSize.labels(this.labels);
    slot.batch = new BatchCall(items, slot, {
      handler: options.batchHandler!,
      invoke: (item, s, log, call) => this.runHandler(item, s, log, call),
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
      const { batch } = slot;
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
        error = slot.batch
          ? await slot.batch.submit(item, job)
          : await this.runHandler(item, slot, log, (ctx) => o.handler!(job as never, ctx));
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
        return true;
      }
      emit('job:failed', job, error, { next: 'tier', attempt });
      log.logger.info({ err: error, tier: decision.tier }, 'job failed; sending it to a retry tier');
      const route = await this.route(item, error, log, (span) => router.toTier(item, error, decision, span));
      log.end('retried', { [ATTR.nextTier]: decision.tier });
      this.deps.metrics.retries.inc({ ...this.labels, tier: String(decision.tier) });
      this.counts.retried++;
      if (route.kind === 'tier') emit('job:retried', job, route);
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
  private async route(
    item: WorkItem,
    error: unknown,
    log: JobLog,
    send: (span: TracedSpan | undefined) => Promise<Route>,
  ): Promise<Route> {
    // A revoked partition's job is redone by its new owner; routing it too would duplicate the retry.
    if (!(await this.deps.confirm(item))) throw new Abandoned();
    const route = await retryWithBackoff('produce', () => send(log.span), {
      onError: (sendError) =>
        log.logger.warn(
          { err: sendError, original: errorClassName(error) },
          'could not publish the failed job; retrying',
        ),
      wait: this.wait(item),
      random: this.deps.random,
    });
    // Lost the partition while the send was under way (the new owner redoes the job): not an
    // outcome of this ownership, though the record was written (at least once).
    if (!(await this.deps.confirm(item))) throw new Abandoned();
    return route;
  }

  /**
   * Runs the handler once. At `jobTimeoutMs` its signal aborts; a handler that still succeeds
   * afterwards succeeded (its side effect happened: running it again would repeat it), one that
   * fails with the abort fails with `JobTimeoutError`. A handler still running `jobTimeoutMs` after
   * the abort is stuck: it gives its slot back (counted in `queue_stuck_jobs`), keeps its key and
   * its offset uncommitted, and its outcome counts whenever it settles.
   */
  private async runHandler(
    item: WorkItem,
    slot: JobSlot,
    log: { readonly logger: Logger; readonly span?: TracedSpan | undefined },
    call: (ctx: JobContext) => unknown,
  ): Promise<unknown> {
    const { options, clock } = this.deps;
    const timeoutMs = options.jobTimeoutMs;
    const attempt = new AttemptSignal();
    slot.attempt = attempt;
    if (slot.stopReason !== undefined) attempt.abort(slot.stopReason);
    let timeout: JobTimeoutError | undefined;
    let stuckTimer: ReturnType<Clock['setTimeout']> | undefined;
    const timer =
      timeoutMs > 0
        ? clock.setTimeout(
            () => {
              timeout = new JobTimeoutError(timeoutMs);
              attempt.abort(timeout);
              stuckTimer = clock.setTimeout(
                () => {
                  log.logger.warn(
                    { timeoutMs },
                    'handler ignores its aborted signal; its slot goes to other jobs, its key waits',
                  );
                  this.deps.dispatcher().markStuck(item);
                },
                timeoutMs,
                { unref: true },
              );
            },
            timeoutMs,
            { unref: true },
          )
        : undefined;
    const ctx = {
      get signal() {
        return attempt.signal;
      },
      get logger() {
        return log.logger;
      },
      get span() {
        return log.span?.span ?? NOOP_SPAN;
      },
    };
    const { span } = log;
    try {
      await (span ? span.run(() => call(ctx)) : call(ctx));
      return undefined;
    } catch (error) {
      if (timeout && (error === timeout || (error as { name?: string } | null)?.name === 'AbortError'))
        return timeout;
      return error ?? new Error('handler threw a nullish value');
    } finally {
      clock.clearTimeout(timer);
      clock.clearTimeout(stuckTimer);
      slot.attempt = undefined;
    }
  }
}
