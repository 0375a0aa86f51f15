import { JobTimeoutError, normalizeThrown } from '../failure/errors.js';
import type { Logger } from '../observability/logger.js';
import { NOOP_SPAN, type TracedSpan } from '../observability/tracing.js';
import type { Clock } from '../timing/clock.js';
import { AttemptSignal, type Dispatcher, type JobSlot } from './dispatcher.js';
import type { Job, JobContext, ResolvedWorkerOptions } from './options.js';
import type { WorkItem } from './work-item.js';

/** What a handler call needs of the worker. */
export interface HandlerDeps {
  readonly jobTimeoutMs: number;
  readonly clock: Clock;
  readonly dispatcher: () => Dispatcher;
}

/**
 * Runs the handler once. At `jobTimeoutMs` its signal aborts; a handler that still succeeds
 * afterwards succeeded (its side effect happened: running it again would repeat it), one that
 * fails with the abort fails with `JobTimeoutError`. A handler still running `jobTimeoutMs` after
 * the abort is stuck: it gives its slot back (counted in `queue_stuck_jobs`), keeps its key and
 * its offset uncommitted, and its outcome counts whenever it settles.
 */
export async function runHandler(
  deps: HandlerDeps,
  item: WorkItem,
  slot: JobSlot,
  log: { readonly logger: Logger; readonly span?: TracedSpan | undefined },
  call: (ctx: JobContext) => unknown,
): Promise<unknown> {
  const { jobTimeoutMs: timeoutMs, clock } = deps;
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
                deps.dispatcher().markStuck(item);
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
    const thrown = normalizeThrown(error);
    if (timeout && (thrown === timeout || (thrown as Error).name === 'AbortError')) return timeout;
    return thrown;
  } finally {
    clock.clearTimeout(timer);
    clock.clearTimeout(stuckTimer);
    slot.attempt = undefined;
  }
}

/** One job's handler call: `handler`, or a `batchHandler` with this job alone (a released job). */
export function callOne(
  options: Pick<ResolvedWorkerOptions, 'handler' | 'batchHandler'>,
  job: Job<unknown>,
  ctx: JobContext,
): unknown {
  const { handler, batchHandler } = options;
  if (handler) return handler(job as never, ctx);
  return Promise.resolve(batchHandler!([job] as never, ctx)).then((result) => {
    const failed = (result as { failed?: { error: unknown }[] } | undefined)?.failed?.[0];
    if (failed) throw failed.error;
  });
}
