import { StrandError } from '../errors.js';
import { JobTimeoutError, normalizeThrown } from '../failure/errors.js';
import type { Logger } from '../observability/logger.js';
import { NOOP_SPAN, type TracedSpan } from '../observability/tracing.js';
import type { TopicRecords } from '../ports.js';
import type { Clock } from '../timing/clock.js';
import { AttemptSignal, type Dispatcher, type JobSlot } from './dispatcher.js';
import type {
  FollowUp,
  FollowUpTarget,
  FollowUpTopic,
  Job,
  JobContext,
  ResolvedWorkerOptions,
} from './options.js';
import type { WorkItem } from './work-item.js';

/** What a handler call needs of the worker. */
export interface HandlerDeps {
  readonly jobTimeoutMs: number;
  readonly clock: Clock;
  readonly dispatcher: () => Dispatcher;
  /** `ctx.enqueue` stages follow-ups for the job's round instead of sending them. */
  readonly exactlyOnce: boolean;
  /** The producers `ctx.enqueue` uses for a `{ topic, schema }` target (Worker: follow-up-producers.ts). */
  readonly followUps?: { get(target: FollowUpTopic): Promise<FollowUpTarget<unknown>> } | undefined;
}

/** The producer behind a `ctx.enqueue` target. */
function followUpTarget<J>(
  deps: HandlerDeps,
  target: FollowUpTarget<J> | FollowUpTopic,
): Promise<FollowUpTarget<J>> {
  if (typeof (target as FollowUpTarget<J>).prepare === 'function')
    return Promise.resolve(target as FollowUpTarget<J>);
  if (!deps.followUps)
    throw new StrandError(
      'CONFIG',
      'ctx.enqueue with { topic, schema } needs a Worker (pass a JobProducer here)',
    );
  return deps.followUps.get(target as FollowUpTopic) as Promise<FollowUpTarget<J>>;
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
  // Exactly once: the attempt's follow-ups, kept only if it completes (then they join the job's writes).
  const followUps: TopicRecords[] | undefined = deps.exactlyOnce ? [] : undefined;
  let open = true;
  const ctx = {
    async enqueue<J>(to: FollowUpTarget<J> | FollowUpTopic, job: J): Promise<FollowUp> {
      const target = await followUpTarget(deps, to);
      if (!followUps) {
        const [result] = await target.enqueueMany([job]);
        return { jobId: result!.jobId };
      }
      const { jobIds, records } = await target.prepare([job]);
      if (!open)
        throw new StrandError(
          'CONFIG',
          'ctx.enqueue settled after its handler returned: await it in the handler',
        );
      followUps.push(...records);
      return { jobId: jobIds[0]! };
    },
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
    if (followUps && followUps.length > 0) item.writes = [...(item.writes ?? []), ...followUps];
    return undefined;
  } catch (error) {
    const thrown = normalizeThrown(error);
    if (timeout && (thrown === timeout || (thrown as Error).name === 'AbortError')) return timeout;
    return thrown;
  } finally {
    open = false;
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
