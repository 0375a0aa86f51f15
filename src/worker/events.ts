import type { Route } from '../failure/router.js';
import type { Job } from './options.js';

/** Events a worker emits (all synchronous; listeners must not throw). */
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
];
