import { StrandError } from '../errors.js';
import { JobTimeoutError, normalizeThrown } from '../failure/errors.js';
import type { Logger } from '../observability/logger.js';
import { NOOP_SPAN, type TracedSpan } from '../observability/tracing.js';
import type { TopicRecords } from '../ports.js';
import type { Clock } from '../timing/clock.js';
import { AttemptSignal, type Dispatcher, type JobSlot } from './dispatcher.js';
import type {
  BatchContext,
  FollowUp,
  FollowUpTarget,
  FollowUpTopic,
  Job,
  ResolvedWorkerOptions,
} from './options.js';
import type { WorkItem } from './work-item.js';

/** A batch handler call's jobs (batch.ts): whose writes a `ctx.enqueue` `{ for: job }` joins. */
export interface CallJobs {
  readonly jobs: readonly { readonly item: WorkItem; readonly job: Job<unknown> }[];
  /** Exactly once: what `ctx.enqueue` staged per job in this call (kept for the jobs that complete). */
  readonly staged: Map<WorkItem, TopicRecords[]>;
}

const sameJob = (job: Job<unknown>, item: WorkItem) =>
  job.offset === item.offset && job.partition === item.partition && job.topic === item.topic;

/**
 * Exactly once: the job a follow-up belongs to. A call of one job owns it whatever `for` says if
 * it names that job; in a call of many, `for` must name one of them (found by identity or position).
 */
function ownerOf(item: WorkItem, call: CallJobs | undefined, options: unknown): WorkItem {
  const named = (options as { for?: Job<unknown> | null } | undefined)?.for ?? undefined;
  const jobs = call?.jobs ?? [];
  if (named === undefined) {
    if (jobs.length <= 1) return jobs[0]?.item ?? item;
    throw new StrandError(
      'CONFIG',
      `ctx.enqueue in a batch handler call of ${jobs.length} jobs with exactlyOnce needs the job it belongs to: ctx.enqueue(target, data, { for: job })`,
    );
  }
  if (!call && sameJob(named, item)) return item;
  const found = jobs.find((s) => s.job === named) ?? jobs.find((s) => sameJob(named, s.item));
  if (found) return found.item;
  throw new StrandError(
    'CONFIG',
    `ctx.enqueue { for } names a job that is not in this call (${named?.topic}:${named?.partition}@${named?.offset}): pass one of the jobs the handler was given`,
  );
}

/** Exactly once: the follow-ups `item` staged in a call join its writes (it completed). */
export function keepFollowUps(item: WorkItem, staged: ReadonlyMap<WorkItem, TopicRecords[]>): void {
  const mine = staged.get(item);
  if (mine && mine.length > 0) item.writes = [...(item.writes ?? []), ...mine];
}

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
  call: (ctx: BatchContext<unknown>) => unknown,
  /** A batch call: its jobs (the caller keeps the staged follow-ups of the jobs that complete). */
  batch?: CallJobs,
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
  // Exactly once: the attempt's follow-ups per job, kept only for a job that completes (then they
  // join its writes: here for a single job, in batch.ts for a batch call's jobs).
  let staged = batch?.staged;
  let open = true;
  const ctx = {
    async enqueue<J>(to: FollowUpTarget<J> | FollowUpTopic, job: J, options?: unknown): Promise<FollowUp> {
      const owner = deps.exactlyOnce ? ownerOf(item, batch, options) : undefined;
      const target = await followUpTarget(deps, to);
      if (!owner) {
        const [result] = await target.enqueueMany([job]);
        return { jobId: result!.jobId };
      }
      const { jobIds, records } = await target.prepare([job]);
      if (!open)
        throw new StrandError(
          'CONFIG',
          'ctx.enqueue settled after its handler returned: await it in the handler',
        );
      staged ??= new Map();
      const list = staged.get(owner);
      if (list) list.push(...records);
      else staged.set(owner, [...records]);
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
    if (!batch && staged) keepFollowUps(item, staged);
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
  ctx: BatchContext<unknown>,
): unknown {
  const { handler, batchHandler } = options;
  if (handler) return handler(job as never, ctx);
  return Promise.resolve(batchHandler!([job] as never, ctx)).then((result) => {
    const failed = (result as { failed?: { error: unknown }[] } | undefined)?.failed?.[0];
    if (failed) throw failed.error;
  });
}
