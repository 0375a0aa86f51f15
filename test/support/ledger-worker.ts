/**
 * A worker module for multi-process tests, run with `strand worker test/support/ledger-worker.ts`.
 * Its settings come from STRAND_TEST_WORKER (JSON); it appends one line per handler start (S) and
 * completion (C) to the ledger file, synchronously, so a SIGKILL loses nothing already written.
 */
import { appendFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { NonRetriableError } from '../../src/failure/errors.js';
import { RedisIdempotencyStore } from '../../src/idempotency/redis-store.js';
import { RedisLimitStore } from '../../src/worker/fairness/redis-limit-store.js';
import { defineWorker } from '../../src/worker/options.js';
import type { Payment } from './jobs.js';

interface Settings {
  topic: string;
  groupId: string;
  ledger: string;
  concurrency?: number;
  ordering?: 'key' | 'partition' | 'unordered';
  minMs?: number;
  maxMs?: number;
  maxBufferedJobs?: number;
  tiers?: number[];
  inPlace?: number;
  maxAttempts?: number;
  /** `retry.ordering` (the worker's default when absent). */
  retryOrdering?: 'strict' | 'relaxed';
  commitIntervalMs?: number;
  shutdownTimeoutMs?: number;
  /** Use the Redis idempotency store with this key prefix. */
  redisPrefix?: string;
  leaseMs?: number;
  /** Port of the Redis the idempotency store talks to (a proxy in outage scenarios). */
  redisPort?: number;
  sessionTimeoutMs?: number;
  heartbeatIntervalMs?: number;
  rebalanceTimeoutMs?: number;
  jobTimeoutMs?: number;
  /** RPUSH the job id to this Redis list as the handler's side effect, after its work. */
  sideEffectList?: string;
  /** Jobs whose memo is "long" sleep this long before their side effect. */
  longMs?: number;
  /** The job's memo is its tenant, with these limits (the per-tenant rate shared through the Redis on `redisPort`, else per worker). */
  limits?: { perKeyConcurrency?: number; perTenantRate?: `${number}/${string}`; redisPort?: number };
}

const s = JSON.parse(process.env.STRAND_TEST_WORKER ?? '{}') as Settings;
const tag = `${process.pid}`;
// The test run's Redis (the harness may have started one on a port of its own).
const redisPort = Number(process.env.STRAND_TEST_REDIS_PORT ?? 6379);
const redis = s.sideEffectList
  ? new Redis({ host: '127.0.0.1', port: redisPort, lazyConnect: false })
  : undefined;

export default defineWorker<Payment>({
  topic: s.topic,
  groupId: s.groupId,
  concurrency: s.concurrency ?? 16,
  ordering: s.ordering ?? 'key',
  maxBufferedJobs: s.maxBufferedJobs ?? 1000,
  commitIntervalMs: s.commitIntervalMs ?? 500,
  shutdownTimeoutMs: s.shutdownTimeoutMs ?? 10_000,
  sessionTimeoutMs: s.sessionTimeoutMs ?? 10_000,
  heartbeatIntervalMs: s.heartbeatIntervalMs ?? 1000,
  ...(s.rebalanceTimeoutMs ? { rebalanceTimeoutMs: s.rebalanceTimeoutMs } : {}),
  ...(s.jobTimeoutMs ? { jobTimeoutMs: s.jobTimeoutMs } : {}),
  retry: {
    tiers: s.tiers ?? [],
    inPlace: s.inPlace ?? 1,
    maxAttempts: s.maxAttempts ?? 5,
    ...(s.retryOrdering ? { ordering: s.retryOrdering } : {}),
  },
  ...(s.redisPrefix
    ? {
        idempotency: {
          store: new RedisIdempotencyStore({
            keyPrefix: s.redisPrefix,
            port: s.redisPort ?? redisPort,
          }),
          leaseMs: s.leaseMs ?? 5000,
        },
      }
    : {}),
  ...(s.limits
    ? {
        tenant: (job) => job.data.memo ?? 'none',
        limits: {
          ...(s.limits.perKeyConcurrency ? { perKey: { concurrency: s.limits.perKeyConcurrency } } : {}),
          ...(s.limits.perTenantRate
            ? {
                perTenant: { rate: s.limits.perTenantRate },
                ...(s.limits.redisPort ? { store: new RedisLimitStore({ port: s.limits.redisPort }) } : {}),
              }
            : {}),
        },
      }
    : {}),
  handler: async (job) => {
    appendFileSync(
      s.ledger,
      `S ${job.id} ${job.data.accountId} ${job.data.sequence} ${job.attempt} ${tag} ${Date.now()}\n`,
    );
    const min = s.minMs ?? 0;
    const max = s.maxMs ?? 0;
    if (max > 0) await new Promise((r) => setTimeout(r, min + Math.random() * (max - min)));
    const memo = job.data.memo ?? '';
    if (memo === 'long') await new Promise((r) => setTimeout(r, s.longMs ?? 1000));
    if (redis && s.sideEffectList) await redis.rpush(s.sideEffectList, job.id);
    if (memo === 'fail-always') throw new Error('downstream rejected the payment');
    if (memo === 'poison') throw new NonRetriableError('payment can never be applied');
    if (memo.startsWith('fail-times-') && job.attempt <= Number(memo.slice('fail-times-'.length))) {
      throw new Error(`transient failure on attempt ${job.attempt}`);
    }
    appendFileSync(
      s.ledger,
      `C ${job.id} ${job.data.accountId} ${job.data.sequence} ${job.attempt} ${tag} ${Date.now()}\n`,
    );
  },
});
