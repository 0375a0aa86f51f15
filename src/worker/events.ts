import { EventEmitter } from 'node:events';
import { normalizeThrown } from '../failure/errors.js';
import type { Route } from '../failure/router.js';
import type { Logger } from '../observability/logger.js';
import type { Job } from './options.js';

/** How the core's parts emit a worker event. */
export type Emit = <E extends keyof WorkerEvents>(event: E, ...args: WorkerEvents[E]) => void;

/** Events a worker emits (all synchronous; a listener that throws is logged and ignored: `emitGuarded`). */
export interface WorkerEvents {
  'job:started': [job: Job<unknown>];
  'job:completed': [job: Job<unknown>, info: { durationMs: number }];
  'job:failed': [
    job: Job<unknown>,
    error: unknown,
    info: { next: 'in-place' | 'tier' | 'dlq' | 'abandoned'; attempt: number },
  ];
  'job:retried': [job: Job<unknown>, route: Extract<Route, { kind: 'tier' }>];
  'job:dead': [
    item: { topic: string; partition: number; offset: string; key: string | null; jobId: string },
    error: unknown,
  ];
  'job:duplicate': [job: Job<unknown>];
  /** Strict key order: the job waits in the parking topic behind `head` (a job id). */
  'job:parked': [
    item: { topic: string; partition: number; offset: string; key: string | null; jobId: string },
    head: string,
  ];
  rebalance: [assignment: { topic: string; partitions: number[] }[]];
  commit: [offsets: { topic: string; partition: number; offset: string }[]];
  /** Whether jobs may start changed: `phase`, `Worker.pause()`, or draining for a rebalance. */
  state: [state: { phase: string; paused: boolean; rebalancing: boolean }];
  /** The drain before a rejoin began, or ended (running jobs finished, or its budget ran out). */
  drain: [info: { phase: 'start' } | { phase: 'end'; committed: boolean; stillRunning: number }];
  /** Every partition was dropped without a new assignment (consumer crash, commit fenced, drain past the rejoin deadline, resubscribe). */
  revoked: [info: { reason: 'crash' | 'fenced' | 'rejoin-deadline' | 'resubscribe' }];
}

/** Every event a `Worker` forwards from its core. */
export const EVENTS: (keyof WorkerEvents)[] = [
  'job:started',
  'job:completed',
  'job:failed',
  'job:retried',
  'job:dead',
  'job:duplicate',
  'job:parked',
  'rebalance',
  'commit',
  'state',
  'drain',
  'revoked',
];
const FORWARDED: ReadonlySet<string> = new Set(EVENTS);

/**
 * Emits a worker event so that no listener can hurt the worker: each listener is called on its
 * own, one that throws (or returns a promise that rejects) is reported to `onFault` and the
 * others still hear the event. Listeners are user code; a throwing one must not leave a job
 * without an outcome.
 */
export function emitGuarded(
  emitter: EventEmitter,
  event: keyof WorkerEvents,
  args: readonly unknown[],
  onFault: (event: keyof WorkerEvents, fault: unknown) => void,
): boolean {
  const listeners = emitter.rawListeners(event) as ((...a: unknown[]) => unknown)[];
  for (const listener of listeners) {
    try {
      const result = listener.apply(emitter, args as unknown[]);
      if (typeof (result as { then?: unknown } | undefined)?.then === 'function')
        (result as Promise<unknown>).then(undefined, (fault: unknown) => onFault(event, fault));
    } catch (fault) {
      onFault(event, fault);
    }
  }
  return listeners.length > 0;
}

/** Logs a listener's fault: the first of each event in full, then one line per 1,000. */
export function listenerFaultLogger(logger: Logger): (event: keyof WorkerEvents, fault: unknown) => void {
  const seen = new Map<string, number>();
  return (event, fault) => {
    const n = (seen.get(event) ?? 0) + 1;
    seen.set(event, n);
    if (n === 1 || n % 1000 === 0)
      logger.error(
        { err: normalizeThrown(fault, 'a listener'), event, times: n },
        'a worker event listener threw; the worker goes on (listeners must not throw)',
      );
  };
}

/**
 * The emitter of `Worker` and `WorkerCore`: job and group events reach every listener, and one
 * that throws is logged (`emitGuarded`), never felt by the job that emitted it.
 */
export abstract class WorkerEmitter extends EventEmitter<WorkerEvents> {
  private onListenerFault: ((event: keyof WorkerEvents, fault: unknown) => void) | undefined;
  protected abstract readonly logger: Logger;

  override emit<E extends keyof WorkerEvents>(event: E, ...args: WorkerEvents[E]): boolean {
    if (!FORWARDED.has(event)) return super.emit(event as never, ...(args as never));
    // Per-job events are emitted whether or not anyone listens: nobody, nothing to do.
    if (this.listenerCount(event) === 0) return false;
    this.onListenerFault ??= listenerFaultLogger(this.logger);
    return emitGuarded(this, event, args, this.onListenerFault);
  }
}
