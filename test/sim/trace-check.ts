/**
 * Checks the event traces of a real run (`STRAND_TRACE_FILE`, src/worker/event-trace.ts; every
 * chaos scenario writes them) with the simulation's invariants (invariants.ts): the same judges
 * that check the model check real Kafka.
 *
 *   node --import tsx test/sim/trace-check.ts <dir> [--tolerance-ms 5] [--json]
 *
 * Every `*.jsonl` file under `dir` is one worker process; `exits.jsonl` (written by the chaos
 * fleet) says when each process ended. The traces are merged by their wall-clock time `t`; two
 * processes of one machine read one clock, so an overlap shorter than `toleranceMs` (default 5 ms:
 * the clocks' granularity and the time between an event and its write) is not counted.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import type { TraceLine } from '../../src/worker/event-trace.js';
import {
  CommitJudge,
  heldReason,
  keyStart,
  type LiveRun,
  type OwnershipOrder,
  type RunHost,
  RunOverlap,
  unresolvedBefore,
} from './invariants.js';

/** A process ended (the chaos fleet writes one line per worker process to `exits.jsonl`). */
export interface ExitLine {
  t: number;
  ev: 'exit';
  /** The trace file of the process, relative to the traces directory. */
  file: string;
  pid: number;
  signal: string | null;
  code: number | null;
}

export interface TraceSet {
  /** Per trace file (relative path): its lines in file order. */
  readonly files: Map<string, TraceLine[]>;
  /** When each trace file's process ended, and every exit line as written. */
  readonly exits: Map<string, number>;
  readonly exitLines: ExitLine[];
  /** Torn last lines (a process killed during a write) skipped. */
  readonly torn: number;
  /** Lines that could not be read anywhere but at the end of a file. */
  readonly corrupt: string[];
}

export interface TraceVerdict {
  workers: number;
  events: number;
  starts: number;
  commits: number;
  jobs: number;
  jobsResolved: number;
  tornLines: number;
  /** Violations by kind. */
  kinds: Record<string, number>;
  /** The first violations (at most 20), each `kind: text`. */
  violations: string[];
}

function jsonlFiles(dir: string, root = dir): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return jsonlFiles(path, root);
    return name.endsWith('.jsonl') ? [relative(root, path)] : [];
  });
}

/** Reads every trace under `dir`; a torn last line of a file (SIGKILL during its write) is skipped. */
export function readTraces(dir: string): TraceSet {
  const files = new Map<string, TraceLine[]>();
  const exits = new Map<string, number>();
  const exitLines: ExitLine[] = [];
  let torn = 0;
  const corrupt: string[] = [];
  for (const file of jsonlFiles(dir)) {
    const text = readFileSync(join(dir, file), 'utf8').split('\n');
    const lines: unknown[] = [];
    text.forEach((raw, i) => {
      if (raw === '') return;
      try {
        lines.push(JSON.parse(raw));
      } catch {
        if (i >= text.length - 2) torn++;
        else corrupt.push(`${file}:${i + 1}`);
      }
    });
    if (file.endsWith('exits.jsonl')) {
      const base = file.slice(0, -'exits.jsonl'.length);
      for (const l of lines as ExitLine[]) {
        exits.set(join(base, l.file), l.t);
        exitLines.push(l);
      }
    } else files.set(file, lines as TraceLine[]);
  }
  return { files, exits, exitLines, torn, corrupt };
}

/** A worker process of the run, as the judges see it. */
interface Host extends RunHost {
  readonly id: string;
  alive: boolean;
  group: string;
  topic: string;
  strict: boolean;
  jobTimeoutMs: number;
  state: { phase: string; paused: boolean; rebalancing: boolean };
  owned: Set<string>;
  epochs: Map<string, OwnershipOrder & { outcomes: Set<number> }>;
}

interface Event {
  t: number;
  host: Host;
  seq: number;
  line: TraceLine | { ev: 'exit' };
}

const str = (v: unknown) => String(v);
const num = (v: unknown) => Number(v);

/**
 * Judges a run's traces: `run-overlap`, `start-while-held`, `unowned-start`, `done-rerun`,
 * `key-overlap`, `key-order`, `commit-unowned`, `commit-backwards`, `commit-passes-unfinished`
 * (records this run started), `strict-order` (strict key order: no attempt of a job starts before
 * every earlier job of its key in its job-topic partition resolved — completed or dead-lettered),
 * and `no-outcome` (a job the traces saw that never completed nor was dead-lettered).
 */
export function checkTraces(
  set: TraceSet,
  o: {
    toleranceMs?: number;
    /**
     * Job ids a record outside the traces shows completed by a process SIGKILLed before it traced
     * the end (a chaos scenario's ledger): resolved for `no-outcome`.
     */
    completedUntraced?: ReadonlySet<string>;
  } = {},
): TraceVerdict {
  const tol = o.toleranceMs ?? 5;
  const kinds: Record<string, number> = {};
  const violations: string[] = [];
  const report = (kind: string, text: string) => {
    kinds[kind] = (kinds[kind] ?? 0) + 1;
    if (violations.length < 20) violations.push(`${kind}: ${text}`);
  };
  for (const at of set.corrupt) report('trace-corrupt', `unreadable line ${at}`);

  // What happened to each record and job, from every trace: first start, first outcome, resolution.
  const firstStart = new Map<string, number>();
  const outcomeAt = new Map<string, number>();
  const resolvedAt = new Map<string, number>();
  const seen = new Map<string, string>();
  /** Per strict lane (`group|partition|key`): its jobs by job-topic offset. */
  const lanes = new Map<string, Map<number, string>>();
  const runOf = new Map<TraceLine, LiveRun<Host>>();
  const events: Event[] = [];
  const hosts: Host[] = [];
  const min = (map: Map<string, number>, k: string, t: number) => {
    const v = map.get(k);
    if (v === undefined || t < v) map.set(k, t);
  };
  let starts = 0;
  let commits = 0;
  for (const [file, lines] of set.files) {
    const open = lines.find((l) => l.ev === 'open');
    const host: Host = {
      id: file.replace(/\.jsonl$/, ''),
      alive: true,
      group: str(open?.group ?? '?'),
      topic: str(open?.topic ?? '?'),
      strict: open?.retryOrdering === 'strict' && num(open?.tiers) > 0 && open?.ordering !== 'unordered',
      jobTimeoutMs: num(open?.jobTimeoutMs ?? 30_000),
      state: { phase: 'running', paused: false, rebalancing: false },
      owned: new Set(),
      epochs: new Map(),
    };
    hosts.push(host);
    const g = host.group;
    const lastT = lines.at(-1)?.t ?? 0;
    const exitAt = set.exits.get(file);
    const open_ = new Map<string, { line: TraceLine; run: LiveRun<Host> }>();
    for (const l of lines) {
      events.push({ t: l.t, host, seq: l.seq, line: l });
      const record = `${g}|${l.topic}:${l.partition}@${l.offset}`;
      const job = `${g}|${l.jobId}`;
      if (l.jobId !== undefined && l.jobId !== '' && !seen.has(job))
        seen.set(job, `${l.topic}:${l.partition}@${l.offset}`);
      if (l.ev === 'start') {
        starts++;
        min(firstStart, record, l.t);
        const lane =
          l.key !== null && l.topic === host.topic ? `${g}|${l.partition}|${str(l.key)}` : undefined;
        // Its end, once known; a run its process never ended ends with the process.
        const run: LiveRun<Host> & { end: number } = {
          host,
          job: str(l.jobId),
          record,
          lane,
          start: l.t,
          end: exitAt ?? lastT,
          outlived: false,
        };
        open_.set(record, { line: l, run });
        runOf.set(l, run);
      } else if (l.ev === 'end') {
        const started = open_.get(record);
        open_.delete(record);
        if (started) {
          (started.run as { end: number }).end = l.t;
          runOf.set(l, started.run);
        }
        if (l.outcome === 'completed') {
          min(outcomeAt, record, l.t);
          min(resolvedAt, job, l.t);
        }
      } else if (l.ev === 'outcome') {
        min(outcomeAt, record, l.t);
        if (l.outcome === 'dead' || l.outcome === 'duplicate') min(resolvedAt, job, l.t);
      } else if (l.ev === 'commit') commits++;
      // Strict lanes: every job of the job topic, by its job-topic partition and offset.
      if (host.strict && l.key !== null && l.key !== undefined && (l.ev === 'start' || l.ev === 'outcome')) {
        const p = l.topic === host.topic ? num(l.partition) : num(l.originPartition);
        const off = l.topic === host.topic ? num(l.offset) : num(l.originOffset);
        if (Number.isInteger(p) && Number.isInteger(off)) {
          const lane = `${g}|${p}|${str(l.key)}`;
          const jobs = lanes.get(lane) ?? new Map<number, string>();
          jobs.set(off, str(l.jobId));
          lanes.set(lane, jobs);
        }
      }
    }
    if (exitAt !== undefined)
      events.push({ t: exitAt, host, seq: Number.MAX_SAFE_INTEGER, line: { ev: 'exit' } });
  }
  /**
   * Per strict lane, its jobs in offset order, and before each index the job that resolved last
   * among those before it (`worst`, unresolved counting as last): the one a start is judged by.
   */
  type LaneJob = { o: number; id: string; resolvedAt: number | undefined };
  const sortedLanes = new Map<string, { jobs: LaneJob[]; worst: (LaneJob | undefined)[] }>();
  const later = (a: LaneJob | undefined, b: LaneJob) =>
    a === undefined ||
    (a.resolvedAt !== undefined && (b.resolvedAt === undefined || b.resolvedAt > a.resolvedAt))
      ? b
      : a;
  for (const [lane, byOffset] of lanes) {
    const g = lane.slice(0, lane.indexOf('|'));
    const jobs = [...byOffset]
      .sort((a, b) => a[0] - b[0])
      .map(([o, id]) => ({ o, id, resolvedAt: resolvedAt.get(`${g}|${id}`) }));
    const worst: (LaneJob | undefined)[] = [undefined];
    for (const j of jobs) worst.push(later(worst.at(-1), j));
    sortedLanes.set(lane, { jobs, worst });
  }

  const overlap = new RunOverlap<Host>(report, (h) => h.jobTimeoutMs, tol);
  const commitJudges = new Map<string, CommitJudge>();
  // A record has an outcome by `t` if it did not start before `t`, or reached one by then.
  const coveredAt = (g: string, tp: string, t: number) => (offset: number) => {
    const k = `${g}|${tp}@${offset}`;
    const s = firstStart.get(k);
    if (s === undefined || s > t + tol) return true;
    const done = outcomeAt.get(k);
    return done !== undefined && done <= t + tol;
  };
  events.sort((a, b) => a.t - b.t || hosts.indexOf(a.host) - hosts.indexOf(b.host) || a.seq - b.seq);
  for (const { host, line: l, t } of events) {
    const g = host.group;
    switch (l.ev) {
      case 'exit':
        host.alive = false;
        break;
      case 'state':
        host.state = { phase: str(l.phase), paused: l.paused === true, rebalancing: l.rebalancing === true };
        break;
      case 'drain':
        if (l.phase === 'end') overlap.outlive(host);
        break;
      case 'revoked':
        overlap.outlive(host);
        host.owned.clear();
        host.epochs.clear();
        break;
      case 'assign': {
        const next = new Set<string>();
        for (const a of l.assignment as { topic: string; partitions: number[] }[])
          for (const p of a.partitions) next.add(`${a.topic}:${p}`);
        for (const tp of [...host.epochs.keys()]) if (!next.has(tp)) host.epochs.delete(tp);
        for (const tp of next)
          if (!host.epochs.has(tp)) host.epochs.set(tp, { lastStart: new Map(), outcomes: new Set() });
        host.owned = next;
        break;
      }
      case 'start': {
        const tp = `${l.topic}:${l.partition}`;
        const offset = num(l.offset);
        const what = `${host.id} started ${tp}@${offset} (job ${l.jobId}, attempt ${l.attempt})`;
        const held = heldReason(host.state);
        if (held) report('start-while-held', `${what} while ${held}`);
        const epoch = host.epochs.get(tp);
        if (!host.owned.has(tp) || !epoch) report('unowned-start', `${what}, a partition it does not own`);
        else
          keyStart(
            epoch,
            host.id,
            tp,
            l.key === undefined ? null : (l.key as string | null),
            offset,
            coveredAt(g, tp, t),
            true,
            report,
          );
        const run = runOf.get(l);
        if (run)
          overlap.started(run, {
            record: `${tp}@${offset} (job ${l.jobId})`,
            lane: `job ${l.jobId} (key ${l.key} of ${host.topic}:${l.partition})`,
          });
        if (host.strict && l.key !== null && l.key !== undefined) checkStrict(host, l, t);
        break;
      }
      case 'end': {
        const run = runOf.get(l);
        if (run) overlap.ended(run);
        if (l.outcome === 'completed')
          host.epochs.get(`${l.topic}:${l.partition}`)?.outcomes.add(num(l.offset));
        break;
      }
      case 'commit': {
        const judge = commitJudges.get(g) ?? new CommitJudge(report);
        commitJudges.set(g, judge);
        for (const c of l.offsets as { topic: string; partition: number; offset: number }[]) {
          const tp = `${c.topic}:${c.partition}`;
          if (!host.owned.has(tp))
            report(
              'commit-unowned',
              `${host.id} committed ${tp}@${c.offset} but owns [${[...host.owned].join(' ')}]`,
            );
          judge.applied(host.id, tp, c.offset, coveredAt(g, tp, t));
        }
        break;
      }
    }
  }

  function checkStrict(host: Host, l: TraceLine, t: number): void {
    const p = l.topic === host.topic ? num(l.partition) : num(l.originPartition);
    const off = l.topic === host.topic ? num(l.offset) : num(l.originOffset);
    const lane = sortedLanes.get(`${host.group}|${p}|${str(l.key)}`);
    if (!lane) return;
    let lo = 0;
    let hi = lane.jobs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (lane.jobs[mid]!.o < off) lo = mid + 1;
      else hi = mid;
    }
    // The latest-resolved job before it decides; every one before it if that is this job's own id
    // at another offset (a duplicate record of it).
    const worst = lane.worst[lo];
    const earlier =
      worst?.id === l.jobId ? lane.jobs.slice(0, lo).filter((j) => j.id !== l.jobId) : worst ? [worst] : [];
    const e = unresolvedBefore(earlier, t, tol);
    if (e)
      report(
        'strict-order',
        `${host.id} started job ${l.jobId} (key ${l.key}, ${host.topic}:${p}@${off}, attempt ${l.attempt}) before job ${e.id} (@${e.o}) of its key resolved (${e.resolvedAt === undefined ? 'never' : `${Math.round(e.resolvedAt - t)} ms later`})`,
      );
  }

  let jobsResolved = 0;
  for (const [job, first] of seen) {
    if (resolvedAt.has(job) || o.completedUntraced?.has(job.slice(job.indexOf('|') + 1))) jobsResolved++;
    else
      report(
        'no-outcome',
        `job ${job.split('|')[1]} (first seen at ${first}) never completed nor was dead-lettered`,
      );
  }
  return {
    workers: hosts.length,
    events: events.length,
    starts,
    commits,
    jobs: seen.size,
    jobsResolved,
    tornLines: set.torn,
    kinds,
    violations,
  };
}

if (process.argv[1] && import.meta.filename === process.argv[1]) {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { 'tolerance-ms': { type: 'string' }, json: { type: 'boolean' } },
  });
  const dir = positionals[0];
  if (!dir) {
    console.error('usage: trace-check.ts <traces dir> [--tolerance-ms 5] [--json]');
    process.exit(2);
  }
  const v = checkTraces(readTraces(dir), { toleranceMs: Number(values['tolerance-ms'] ?? 5) });
  if (values.json) console.log(JSON.stringify(v, null, 2));
  else {
    const { violations, ...figures } = v;
    console.log(JSON.stringify(figures));
    for (const line of violations) console.log(`CHECK VIOLATION ${line}`);
  }
  process.exit(Object.keys(v.kinds).length === 0 ? 0 : 1);
}
