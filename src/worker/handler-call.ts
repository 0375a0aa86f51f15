import type { Span } from '@opentelemetry/api';
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
  /** The handler timeouts' shared timer; undefined when `jobTimeoutMs` is 0 (no timeout). */
  readonly deadlines?: HandlerDeadlines | undefined;
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
 * Handler timeouts without a timer per call: every call has the same `jobTimeoutMs`, so deadlines
 * come in start order and one timer, set for the earliest, serves them all. A call that ended
 * leaves its place empty at once; the empty places are compacted away once they are most of the
 * queue (one long call ahead of many short ones would otherwise keep them all).
 */
export class HandlerDeadlines {
  /** Calls in start order; an ended call's place is emptied at once (it must not keep its job's memory). */
  private queue: (HandlerContext | undefined)[] = [];
  private head = 0;
  /** Emptied places behind a running call. */
  private gone = 0;
  private timer: ReturnType<Clock['setTimeout']> | undefined;

  constructor(
    private readonly clock: Clock,
    readonly ms: number,
  ) {}

  add(call: HandlerContext): void {
    call.deadline = this.clock.now() + this.ms;
    call.place = this.queue.length;
    this.queue.push(call);
    if (this.timer === undefined) this.arm();
  }

  /**
   * The call ended before its deadline. The timer stays set (it finds nothing then): cleared and
   * set again per call it would be a timer per job after all.
   */
  end(call: HandlerContext): void {
    call.deadline = -1;
    this.queue[call.place] = undefined;
    this.gone++;
    this.skipEmpty();
    // Emptied places go once they are most of the queue (each compaction follows as many ends).
    if (this.gone > 64 && this.gone * 2 > this.queue.length - this.head) {
      const live = this.queue.slice(this.head).filter((c) => c !== undefined);
      for (const [i, c] of live.entries()) c.place = i;
      this.queue = live;
      this.head = 0;
      this.gone = 0;
    }
  }

  /** Moves past emptied places at the front; an empty queue starts over. */
  private skipEmpty(): void {
    while (this.head < this.queue.length && this.queue[this.head] === undefined) {
      this.head++;
      this.gone--;
    }
    if (this.head === this.queue.length) {
      this.queue = [];
      this.head = 0;
      this.gone = 0;
    }
  }

  private arm(): void {
    const next = this.queue[this.head];
    if (!next) return;
    this.timer = this.clock.setTimeout(() => this.fire(), Math.max(0, next.deadline - this.clock.now()), {
      unref: true,
    });
  }

  private fire(): void {
    this.timer = undefined;
    const now = this.clock.now();
    for (;;) {
      this.skipEmpty();
      const call = this.queue[this.head];
      if (!call || call.deadline > now) break;
      this.queue[this.head++] = undefined;
      call.deadline = -1;
      call.timedOut();
    }
    this.arm();
  }
}

/**
 * The `ctx` of one handler call (a class: an object literal with getters is made on V8's slow path,
 * a measurable cost per job). Its `enqueue` is bound on first read, so `const { enqueue } = ctx` works.
 */
class HandlerContext {
  /** When its timeout fires (`HandlerDeadlines`); -1 once ended or fired. */
  deadline = -1;
  /** Its place in `HandlerDeadlines`' queue. */
  place = 0;
  /** Set when the timeout fired. */
  timeout: JobTimeoutError | undefined;
  stuckTimer: ReturnType<Clock['setTimeout']> | undefined;
  /** Exactly once: the attempt's follow-ups per job (`CallJobs.staged` for a batch call). */
  staged: Map<WorkItem, TopicRecords[]> | undefined;
  open = true;
  private bound: HandlerContext['send'] | undefined;

  constructor(
    private readonly deps: HandlerDeps,
    private readonly item: WorkItem,
    readonly attempt: AttemptSignal,
    private readonly log: { readonly logger: Logger; readonly span?: TracedSpan | undefined },
    private readonly batch: CallJobs | undefined,
  ) {
    this.staged = batch?.staged;
  }

  get enqueue(): HandlerContext['send'] {
    this.bound ??= this.send.bind(this);
    return this.bound;
  }

  get signal(): AbortSignal {
    return this.attempt.signal;
  }

  get logger(): Logger {
    return this.log.logger;
  }

  get span(): Span {
    return this.log.span?.span ?? NOOP_SPAN;
  }

  private async send<J>(to: FollowUpTarget<J> | FollowUpTopic, job: J, options?: unknown): Promise<FollowUp> {
    const { deps, item, batch } = this;
    const owner = deps.exactlyOnce ? ownerOf(item, batch, options) : undefined;
    const target = await followUpTarget(deps, to);
    if (!owner) {
      const [result] = await target.enqueueMany([job]);
      return { jobId: result!.jobId };
    }
    const { jobIds, records } = await target.prepare([job]);
    if (!this.open)
      throw new StrandError(
        'CONFIG',
        'ctx.enqueue settled after its handler returned: await it in the handler',
      );
    this.staged ??= new Map();
    const list = this.staged.get(owner);
    if (list) list.push(...records);
    else this.staged.set(owner, [...records]);
    return { jobId: jobIds[0]! };
  }

  /** `jobTimeoutMs` passed: the signal aborts; still running as long again, the call is stuck. */
  timedOut(): void {
    const { deps, item, log } = this;
    const timeoutMs = deps.jobTimeoutMs;
    this.timeout = new JobTimeoutError(timeoutMs);
    this.attempt.abort(this.timeout);
    this.stuckTimer = deps.clock.setTimeout(
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
  }
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
  const attempt = new AttemptSignal();
  slot.attempt = attempt;
  if (slot.stopReason !== undefined) attempt.abort(slot.stopReason);
  const ctx = new HandlerContext(deps, item, attempt, log, batch);
  if (deps.deadlines) deps.deadlines.add(ctx);
  const { span } = log;
  try {
    // A handler that returns no promise is not awaited (one microtask less per job).
    const result = span
      ? span.run(() => call(ctx as BatchContext<unknown>))
      : call(ctx as BatchContext<unknown>);
    if (result !== undefined) await result;
    if (!batch && ctx.staged) keepFollowUps(item, ctx.staged);
    return undefined;
  } catch (error) {
    const thrown = normalizeThrown(error);
    const { timeout } = ctx;
    if (timeout && (thrown === timeout || (thrown as Error).name === 'AbortError')) return timeout;
    return thrown;
  } finally {
    ctx.open = false;
    if (ctx.deadline >= 0) deps.deadlines!.end(ctx);
    deps.clock.clearTimeout(ctx.stuckTimer);
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
