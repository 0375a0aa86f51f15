/**
 * Invariants judged the same way on the model and on real runs: the simulation (sim.ts) feeds them
 * as its steps happen, the trace checker (trace-check.ts) replays the merged event traces of a real
 * chaos run through them. Each judge reports `(kind, text)`; the kinds are the ones README lists.
 */

export type Report = (kind: string, text: string) => void;

/** Whatever runs handlers: a simulated instance, or a worker process of a real run. */
export interface RunHost {
  readonly id: string;
  /** False once the process died (SIGKILL): its runs ended with it. */
  readonly alive: boolean;
}

/** A handler run, from its start to its end (`run-overlap`). */
export interface LiveRun<H extends RunHost = RunHost> {
  readonly host: H;
  /** Names the job in messages (a simulation rid, a real job id). */
  readonly job: string | number;
  /** The record it runs (`tp@offset`, with the group): a routed copy of a job is another record (at least once). */
  readonly record: string;
  /** The job-topic partition and key of a keyed job-topic record (with the group), else undefined. */
  readonly lane: string | undefined;
  readonly start: number;
  /** When it ended, if known ahead (a trace read after the run); the simulation removes runs as they end. */
  readonly end?: number;
  /** It outlived a drain of its worker, the rebalance timeout, or its consumer crashed: the documented overlap. */
  outlived: boolean;
}

/**
 * Two runs of one record, or of two jobs of one key of a job-topic partition, on two workers never
 * overlap in time (`run-overlap`) — unless the earlier one outlived its drain (it ran past
 * `jobTimeoutMs`, ignoring its signal, or past a drain, the rebalance timeout or a consumer crash
 * of its worker: docs/guarantees.md "when two runs of one job can overlap"). Runs on one worker
 * are judged by the per-ownership checks (`keyStart`). `toleranceMs`: an earlier run that ends
 * at most this long after the later one started is not counted (clocks of two processes).
 */
export class RunOverlap<H extends RunHost = RunHost> {
  private readonly byRecord = new Map<string, Set<LiveRun<H>>>();
  private readonly byLane = new Map<string, Set<LiveRun<H>>>();
  private readonly byHost = new Map<H, Set<LiveRun<H>>>();

  constructor(
    private readonly report: Report,
    private readonly jobTimeoutMs: (host: H) => number,
    private readonly toleranceMs = 0,
  ) {}

  /** A run starts; `zombie`: its worker was expelled and not told yet (its runs may overlap the next owner's). */
  started(run: LiveRun<H>, what: { record: string; lane: string }, zombie = false): void {
    const reported = new Set<LiveRun<H>>();
    const check = (others: Set<LiveRun<H>> | undefined, label: string) => {
      if (zombie) return;
      for (const o of others ?? []) {
        if (o.host === run.host || o.outlived || !o.host.alive || reported.has(o)) continue;
        if (run.start - o.start > this.jobTimeoutMs(o.host)) continue;
        if (o.end !== undefined && o.end - run.start <= this.toleranceMs) continue;
        reported.add(o);
        this.report(
          'run-overlap',
          `${run.host.id} started ${label} while ${o.host.id} still runs ${o.job === run.job ? 'it' : `${typeof o.job === 'number' ? 'rid ' : ''}${o.job}`} (started ${Math.round(run.start - o.start)} ms ago)`,
        );
      }
    };
    check(this.byRecord.get(run.record), what.record);
    if (run.lane) check(this.byLane.get(run.lane), what.lane);
    add(this.byRecord, run.record, run);
    if (run.lane) add(this.byLane, run.lane, run);
    add(this.byHost, run.host, run);
  }

  ended(run: LiveRun<H>): void {
    this.byHost.get(run.host)?.delete(run);
    this.byRecord.get(run.record)?.delete(run);
    if (run.lane) this.byLane.get(run.lane)?.delete(run);
  }

  /** Every run of `host` still going outlived its ownership (drain settled, consumer crashed, expelled). */
  outlive(host: H): void {
    for (const run of this.byHost.get(host) ?? []) run.outlived = true;
  }

  /** Runs of `host` in progress. */
  live(host: H): ReadonlySet<LiveRun<H>> {
    return this.byHost.get(host) ?? new Set();
  }
}

function add<K, V>(map: Map<K, Set<V>>, key: K, value: V): void {
  const set = map.get(key) ?? new Set();
  set.add(value);
  map.set(key, set);
}

/**
 * `start-while-held`: no handler starts while the worker is paused or draining for a rebalance; a
 * stopping worker finishes what it started (in-place retries, a release's next job) within its
 * shutdown budget. Returns why the start was held, or undefined.
 */
export function heldReason(state: {
  readonly phase: string;
  readonly paused: boolean;
  readonly rebalancing: boolean;
}): string | undefined {
  if (!(state.paused || state.rebalancing) || state.phase === 'stopping') return undefined;
  return state.paused ? 'paused' : 'draining for a rebalance';
}

/** One worker's continuous ownership of a partition, as the per-ownership checks see it. */
export interface OwnershipOrder {
  /** Per key: the offset whose handler started last. */
  readonly lastStart: Map<string, number>;
  /** Offsets that reached an outcome in this ownership. */
  readonly outcomes: { has(offset: number): boolean };
  /** For `done-rerun` (default `outcomes.has`): the model counts an outcome per tracker of the core. */
  readonly doneHere?: (offset: number) => boolean;
}

/**
 * A handler start of `offset` (key `key`) in one worker's ownership of `tp`: it never runs again a
 * record that succeeded in this ownership (`done-rerun`); with a key, the previously started job of
 * the key reached an outcome (`key-overlap`, `covered` says so for outcomes the ownership did not
 * see itself) and jobs of a key start in offset order (`key-order`, when `ordered`).
 */
export function keyStart(
  own: OwnershipOrder,
  who: string,
  tp: string,
  key: string | null,
  offset: number,
  covered: (offset: number) => boolean,
  ordered: boolean,
  report: Report,
): void {
  if (own.doneHere ? own.doneHere(offset) : own.outcomes.has(offset))
    report('done-rerun', `${who} ran ${tp}@${offset} again after it reached an outcome in this ownership`);
  if (key === null) return;
  const last = own.lastStart.get(key);
  if (last !== undefined && last !== offset) {
    if (!own.outcomes.has(last) && !covered(last))
      report(
        'key-overlap',
        `${who} ${tp} key ${key}: ${offset} started while ${last} has not reached an outcome`,
      );
    else if (offset < last && ordered)
      report('key-order', `${who} ${tp} key ${key}: ${offset} started after ${last}`);
  }
  own.lastStart.set(key, offset);
}

/**
 * Commits of one group as they land: never backwards (`commit-backwards`), never past a record
 * without an outcome (`commit-passes-unfinished`; `covered(offset)` says whether the record at that
 * offset has one now). What was verified once is not walked again.
 */
export class CommitJudge {
  private readonly verified = new Map<string, number>();
  private readonly last = new Map<string, number>();

  constructor(private readonly report: Report) {}

  /** `prev`: the committed offset before this commit, if the caller knows better (the model's group). */
  applied(
    who: string,
    tp: string,
    offset: number,
    covered: (offset: number) => boolean,
    detail: (offset: number) => string = () => '',
    prev = this.last.get(tp),
  ): void {
    if (prev !== undefined && offset < prev)
      this.report('commit-backwards', `${who} moved ${tp} back from ${prev} to ${offset}`);
    this.last.set(tp, offset);
    let v = this.verified.get(tp) ?? 0;
    for (; v < offset; v++) {
      if (!covered(v)) {
        this.report(
          'commit-passes-unfinished',
          `${who} committed ${tp}@${offset} but ${tp}@${v}${detail(v)} has no outcome`,
        );
        return;
      }
    }
    if (v > (this.verified.get(tp) ?? 0)) this.verified.set(tp, v);
  }
}

/**
 * Strict key order: the first job of `earlier` (the jobs of a key before the judged one in its
 * job-topic partition) not resolved — succeeded or dead-lettered — by `at` (less `toleranceMs`),
 * or undefined. `resolvedAt` undefined: not resolved (yet, or ever).
 */
export function unresolvedBefore<J extends { readonly resolvedAt: number | undefined }>(
  earlier: Iterable<J>,
  at: number,
  toleranceMs = 0,
): J | undefined {
  for (const e of earlier) if (e.resolvedAt === undefined || e.resolvedAt > at + toleranceMs) return e;
  return undefined;
}

/**
 * `tenant-share`: while a tenant X has runnable jobs (under its concurrency cap), each other tenant
 * Y starts at most ⌈1/w(X)⌉ × ⌈w(Y)⌉ jobs between two starts of X: one turn of Y (at most ⌈w(Y)⌉
 * starts) for each turn X needs to earn a start (the deficit round robin of tenant-queue.ts; the
 * argument is at `watchTenantShares` in sim.ts). Tenants are named as the queue names them.
 */
export class TenantShares {
  /** Per waiting tenant: the starts of each other tenant since its own last start. */
  private readonly since = new Map<string, Map<string, number>>();

  constructor(
    private readonly weight: (tenant: string) => number,
    private readonly report: Report,
  ) {}

  /** Only these tenants still wait: the others had no runnable jobs (or were at their cap) and wait afresh. */
  waiting(tenants: { has(name: string): boolean }): void {
    for (const name of this.since.keys()) if (!tenants.has(name)) this.since.delete(name);
  }

  /** A job of `started` started; `runnable`: the tenants with runnable jobs under their cap just before. */
  started(started: string, runnable: readonly string[], where: string): void {
    this.waiting(new Set(runnable));
    for (const name of runnable) {
      const counts = this.since.get(name) ?? new Map<string, number>();
      this.since.set(name, counts);
      if (name === started) {
        counts.clear();
        continue;
      }
      const n = (counts.get(started) ?? 0) + 1;
      counts.set(started, n);
      const turns = Math.ceil(1 / Math.min(1, this.weight(name)));
      if (n > turns * Math.ceil(this.weight(started))) {
        const show = (x: string) => x || "''";
        this.report(
          'tenant-share',
          `${where}tenant ${show(name)} (weight ${this.weight(name)}) waited with runnable jobs while ${show(started)} (weight ${this.weight(started)}) started ${n} jobs`,
        );
      }
    }
  }
}
