import { type ChildProcess, spawn } from 'node:child_process';
import { appendFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { createKafka } from '../src/kafka/client.js';

export interface LedgerLine {
  kind: 'S' | 'C';
  jobId: string;
  key: string;
  sequence: number;
  attempt: number;
  pid: string;
  at: number;
}

/**
 * Worker processes (`strand worker test/support/ledger-worker.ts`) for chaos scenarios. Each
 * records its events to a trace (`STRAND_TRACE_FILE`: `<traceDir>/w<n>.jsonl`), and the fleet
 * writes when each process ended to `<traceDir>/exits.jsonl`; chaos/traces.ts checks them.
 */
export class ChaosFleet {
  /** Every fleet made in this process, in order (chaos/traces.ts finds a scenario's fleets). */
  static readonly all: ChaosFleet[] = [];
  readonly dir = mkdtempSync(join(tmpdir(), 'strand-chaos-'));
  readonly ledger = join(this.dir, 'ledger.txt');
  /** Under STRAND_CHAOS_TRACE_DIR when set (one folder per fleet), else in the fleet's folder. */
  readonly traceDir = process.env.STRAND_CHAOS_TRACE_DIR
    ? join(process.env.STRAND_CHAOS_TRACE_DIR, basename(this.dir))
    : join(this.dir, 'traces');
  private readonly children = new Set<ChildProcess>();
  private started = 0;

  constructor(
    private readonly conn: { brokers: string[]; registryUrl: string },
    private readonly settings: Record<string, unknown>,
    /** Keep worker logs at this level in `<dir>/worker-<pid>.log` (default: CHAOS_LOG_LEVEL, else none). */
    private readonly logLevel = process.env.CHAOS_LOG_LEVEL,
    /** The worker module the processes run. */
    private readonly module = 'test/support/ledger-worker.ts',
  ) {
    mkdirSync(this.traceDir, { recursive: true });
    ChaosFleet.all.push(this);
  }

  start(): ChildProcess {
    if (this.logLevel) console.error(`worker logs in ${this.dir}`);
    const file = `w${++this.started}.jsonl`;
    const child = spawn(process.execPath, ['dist/cli/main.js', 'worker', this.module], {
      env: {
        ...process.env,
        STRAND_BROKERS: this.conn.brokers.join(','),
        STRAND_REGISTRY_URL: this.conn.registryUrl,
        STRAND_LOG_LEVEL: this.logLevel ?? 'error',
        STRAND_TEST_WORKER: JSON.stringify({ ...this.settings, ledger: this.ledger }),
        STRAND_TRACE_FILE: join(this.traceDir, file),
      },
      stdio: ['ignore', 'ignore', this.logLevel ? 'pipe' : 'ignore'],
    });
    child.stderr?.on('data', (d: Buffer) => appendFileSync(join(this.dir, `worker-${child.pid}.log`), d));
    this.children.add(child);
    child.on('exit', (code, signal) => {
      this.children.delete(child);
      const t = performance.timeOrigin + performance.now();
      const line = { t, ev: 'exit', file, pid: child.pid, signal, code };
      appendFileSync(join(this.traceDir, 'exits.jsonl'), `${JSON.stringify(line)}\n`);
    });
    return child;
  }

  get alive(): ChildProcess[] {
    return [...this.children];
  }

  kill(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    return new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill(signal);
    });
  }

  async killAll(): Promise<void> {
    await Promise.all(this.alive.map((c) => this.kill(c)));
  }

  read(): LedgerLine[] {
    if (!existsSync(this.ledger)) return [];
    return readFileSync(this.ledger, 'utf8').split('\n').filter(Boolean).map(parseLedgerLine);
  }
}

/** One ledger line: `S|C <job id> <key> <sequence> <attempt> <pid> <ms>` (test/support/ledger-worker.ts). */
export function parseLedgerLine(line: string): LedgerLine {
  const [kind, jobId, key, sequence, attempt, pid, at] = line.trim().split(/\s+/);
  return {
    kind: kind as 'S' | 'C',
    jobId: jobId!,
    key: key!,
    sequence: Number(sequence),
    attempt: Number(attempt),
    pid: pid!,
    at: Number(at),
  };
}

/** A job's run that completed: the start line of the attempt that completed, and its completion. */
export interface CompletedRun {
  jobId: string;
  key: string;
  sequence: number;
  pid: string;
  start: number;
  end: number;
}

/**
 * The first completed run of every job: its completion line and the start line of that attempt
 * in the same process (the latest one before it). Runs that never completed (the process was
 * killed, the attempt failed) and later re-runs of a completed job are left out.
 */
export function completedRuns(lines: readonly LedgerLine[]): CompletedRun[] {
  const openStarts = new Map<string, LedgerLine>();
  const runs = new Map<string, CompletedRun>();
  for (const l of lines) {
    const attempt = `${l.jobId} ${l.pid} ${l.attempt}`;
    if (l.kind === 'S') {
      openStarts.set(attempt, l);
      continue;
    }
    const start = openStarts.get(attempt);
    openStarts.delete(attempt);
    if (runs.has(l.jobId)) continue;
    runs.set(l.jobId, {
      jobId: l.jobId,
      key: l.key,
      sequence: l.sequence,
      pid: l.pid,
      start: start?.at ?? Number.NaN,
      end: l.at,
    });
  }
  return [...runs.values()];
}

/**
 * Per-key order judged by time across every process: per key, in enqueue (sequence) order, each
 * job's completed run must start at or after the previous job's completed run ended. This catches
 * two jobs of one key running at once (in one process or two) and a later job starting before an
 * earlier one completed. It judges each job's first completed attempt, so a run cut short by a
 * crash, and a duplicate delivery after the job had completed, are not held against the order.
 * (A job retried through a tier leaves its key's order by design; the runs judged here have no
 * failing jobs.) Returns one line per key that broke the order.
 */
export function keyOrderViolations(lines: readonly LedgerLine[]): string[] {
  const byKey = new Map<string, CompletedRun[]>();
  for (const run of completedRuns(lines)) byKey.set(run.key, [...(byKey.get(run.key) ?? []), run]);
  const out: string[] = [];
  for (const [key, runs] of byKey) {
    runs.sort((a, b) => a.sequence - b.sequence);
    for (let i = 1; i < runs.length; i++) {
      const prev = runs[i - 1]!;
      const next = runs[i]!;
      if (Number.isNaN(next.start)) {
        out.push(`${key}: #${next.sequence} completed without a start line`);
        break;
      }
      if (next.start < prev.end) {
        const how = next.start < prev.start ? 'started before' : 'ran at the same time as';
        out.push(
          `${key}: #${next.sequence} (pid ${next.pid}, ${next.start}-${next.end}) ${how} #${prev.sequence} (pid ${prev.pid}, ${prev.start}-${prev.end})`,
        );
        break;
      }
    }
  }
  return out;
}

/**
 * Strict key order (`retry.ordering: 'strict'`), judged by every start: per key, no attempt of a
 * job (failed attempts included) starts before every job enqueued before it on that key first
 * completed — a job waiting in a retry tier holds its key. Returns one line per key that broke it.
 */
export function strictStartViolations(lines: readonly LedgerLine[]): string[] {
  const firstDone = new Map<string, number>();
  for (const run of completedRuns(lines)) firstDone.set(run.jobId, run.end);
  const byKey = new Map<string, Map<number, { jobId: string; starts: number[] }>>();
  for (const l of lines) {
    if (l.kind !== 'S') continue;
    const jobs = byKey.get(l.key) ?? new Map<number, { jobId: string; starts: number[] }>();
    byKey.set(l.key, jobs);
    const job = jobs.get(l.sequence) ?? { jobId: l.jobId, starts: [] };
    jobs.set(l.sequence, job);
    job.starts.push(l.at);
  }
  const out: string[] = [];
  for (const [key, jobs] of byKey) {
    let earlierDone = Number.NEGATIVE_INFINITY;
    let earlier = '';
    for (const [sequence, job] of [...jobs].sort((a, b) => a[0] - b[0])) {
      const first = Math.min(...job.starts);
      if (first < earlierDone) {
        out.push(
          `${key}: #${sequence} started at ${first}, before ${earlier} first completed (${earlierDone})`,
        );
        break;
      }
      const done = firstDone.get(job.jobId);
      if (done === undefined) break; // never completed: the loss count reports it
      if (done > earlierDone) {
        earlierDone = done;
        earlier = `#${sequence}`;
      }
    }
  }
  return out;
}

/** Open file descriptors of a process (sockets, files, pipes): its open handles as the OS sees them. */
export function openFds(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

/** Worker log lines at error level or above (pino level >= 50), across the fleet's log files. */
export function errorLogLines(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.startsWith('worker-') && f.endsWith('.log'))
    .flatMap((f) => readFileSync(join(dir, f), 'utf8').split('\n'))
    .filter((l) => /"level":(5\d|6\d)/.test(l));
}

export function rssMiB(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

/**
 * Samples the group's committed offsets on `topic` every 200 ms (one admin connection) until
 * stopped; records every partition whose committed offset went down. `last` holds the latest
 * committed offset per partition.
 */
export async function watchCommits(conn: { brokers: string[] }, groupId: string, topic: string) {
  const admin = createKafka({ brokers: conn.brokers, clientId: 'strand-commit-watch' }).admin();
  await admin.connect();
  const last = new Map<number, number>();
  const backwards: string[] = [];
  let samples = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const [res] = await admin.fetchOffsets({ groupId, topics: [topic] }).catch(() => []);
      for (const part of res?.partitions ?? []) {
        const offset = Number(part.offset);
        if (offset < 0) continue;
        const prev = last.get(part.partition);
        if (prev !== undefined && offset < prev)
          backwards.push(`partition ${part.partition}: ${prev} -> ${offset}`);
        last.set(part.partition, offset);
      }
      samples++;
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  return {
    backwards,
    last,
    get samples() {
      return samples;
    },
    stop: async () => {
      running = false;
      await loop;
      await admin.disconnect();
    },
  };
}
