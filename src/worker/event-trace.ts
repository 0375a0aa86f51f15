import type { EventEmitter } from 'node:events';
import { openSync, writeSync } from 'node:fs';
import { HEADERS } from '../headers.js';
import type { WorkerEvents } from './events.js';
import type { Job, ResolvedWorkerOptions } from './options.js';

/**
 * One line of an event trace (JSON): `t` is wall-clock ms with a sub-ms fraction
 * (`performance.timeOrigin + performance.now()`: monotonic within the process, comparable across
 * processes of one machine), `seq` counts the lines of the file, `w` names the worker.
 */
export interface TraceLine {
  t: number;
  seq: number;
  w: string;
  ev: 'open' | 'start' | 'end' | 'outcome' | 'assign' | 'commit' | 'state' | 'drain' | 'revoked';
  [field: string]: unknown;
}

type Emitter = Pick<EventEmitter, 'on'>;

/** A job's place: its record, and its job-topic origin (a tier record's, or its own). */
function place(job: {
  topic: string;
  partition: number;
  offset: string;
  key: string | null;
  jobId?: string;
  id?: string;
}) {
  return {
    topic: job.topic,
    partition: job.partition,
    offset: Number(job.offset),
    key: job.key,
    jobId: job.jobId ?? job.id,
  };
}

function origin(job: Job<unknown>): { originPartition?: number; originOffset?: number; released?: true } {
  const h = job.headers;
  const released = h[HEADERS.parkedKey] !== undefined ? { released: true as const } : {};
  if (h[HEADERS.originTopic] === undefined) return released;
  return {
    originPartition: Number(h[HEADERS.originPartition]),
    originOffset: Number(h[HEADERS.originOffset]),
    ...released,
  };
}

/**
 * Appends a worker's events to `file` as JSON lines, one synchronous write per event, so a
 * SIGKILL loses nothing already written (at most a torn last line, which the checker skips).
 * Off unless asked for (`STRAND_TRACE_FILE` in `strand worker`): nothing listens otherwise, and
 * the worker forwards no per-job event to nobody. For checking real runs against the simulation's
 * invariants (test/sim/trace-check.ts, docs/chaos.md).
 */
export function recordEventTrace(
  worker: Emitter,
  file: string,
  options: ResolvedWorkerOptions,
  workerId = `${process.pid}`,
): void {
  const fd = openSync(file, 'a');
  let seq = 0;
  const write = (ev: TraceLine['ev'], fields: Record<string, unknown>) =>
    writeSync(
      fd,
      `${JSON.stringify({ t: performance.timeOrigin + performance.now(), seq: seq++, w: workerId, ev, ...fields })}\n`,
    );
  write('open', {
    pid: process.pid,
    group: options.groupId,
    topic: options.topic,
    tiers: options.retry.tiers.length,
    ordering: options.ordering,
    retryOrdering: options.retry.ordering,
    jobTimeoutMs: options.jobTimeoutMs,
    rebalanceTimeoutMs: options.rebalanceTimeoutMs,
    sessionTimeoutMs: options.sessionTimeoutMs,
    concurrency: options.concurrency,
  });
  const on = <E extends keyof WorkerEvents>(event: E, listener: (...args: WorkerEvents[E]) => void) =>
    worker.on(event, listener as (...args: unknown[]) => void);
  on('job:started', (job) => write('start', { ...place(job), attempt: job.attempt, ...origin(job) }));
  on('job:completed', (job, info) =>
    write('end', { ...place(job), attempt: job.attempt, outcome: 'completed', ms: info.durationMs }),
  );
  on('job:failed', (job, _error, info) =>
    write('end', { ...place(job), attempt: info.attempt, outcome: 'failed', next: info.next }),
  );
  on('job:retried', (job) => write('outcome', { ...place(job), outcome: 'retried' }));
  on('job:dead', (item) => write('outcome', { ...place(item), outcome: 'dead' }));
  on('job:duplicate', (job) => write('outcome', { ...place(job), outcome: 'duplicate' }));
  on('job:parked', (item, head) => write('outcome', { ...place(item), outcome: 'parked', head }));
  on('rebalance', (assignment) => write('assign', { assignment }));
  on('commit', (offsets) =>
    write('commit', { offsets: offsets.map((o) => ({ ...o, offset: Number(o.offset) })) }),
  );
  on('state', (state) => write('state', state));
  on('drain', (info) => write('drain', info));
  on('revoked', (info) => write('revoked', info));
}
