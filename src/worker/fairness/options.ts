import ms from 'ms';
import { z } from 'zod';
import { NonRetriableError } from '../../failure/errors.js';
import type { Job } from '../job.js';
import type { LimitStore } from './limit-store.js';

/** A rate: `'<n>/<unit>'` (`'50/s'`, `'10/min'`, `'1000/h'`, `'5/10s'`): `n` starts per that time. */
export type RateString = `${number}/${string}`;

/** How many starts per how many milliseconds (a token bucket of `max` tokens refilled over `perMs`). */
export interface Rate {
  readonly max: number;
  readonly perMs: number;
}

/** Per-key, per-tenant limits and weighted fairness (docs/options.md, "Tenants and limits"). */
export interface LimitsOptions {
  /** Every key (one partition, so one worker owns it): at most `rate` starts and `concurrency` running. */
  perKey?: { rate?: RateString; concurrency?: number };
  /**
   * Every tenant: at most `rate` starts (per worker, or across the group with `store`) and
   * `concurrency` running (per worker); `weights` give a tenant more of the dispatches when
   * tenants wait (weighted deficit round robin). @defaultValue weight 1
   */
  perTenant?: { rate?: RateString; concurrency?: number; weights?: Record<string, number> };
  /** Holds the tenants' token buckets for every worker of the group (RedisLimitStore). */
  store?: LimitStore;
  /** When the store cannot be reached: `'open'` uses a per-worker bucket, `'closed'` starts nothing. @defaultValue 'open' */
  onStoreError?: 'open' | 'closed';
  /**
   * Weighted fair share across tenants: in the dispatcher (round robin) and in the intake (a tenant
   * over its share of the job buffer is deferred, read again later). `false`: limits only. @defaultValue true
   */
  fair?: boolean;
  /** Most deferred offsets per partition (memory bound of the intake's deferral). @defaultValue 10000 */
  maxDeferred?: number;
  /** `queue_tenant_waiting` has a series for this many tenants (most waiting) plus `other`. @defaultValue 10 */
  metricsTopTenants?: number;
}

/** What the worker options add for tenants. */
export interface TenantOptions<T> {
  /** The tenant of a job (for fairness and per-tenant limits). @defaultValue every job in one tenant */
  tenant?: (job: Job<T>) => string;
  limits?: LimitsOptions;
}

const UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  sec: 1000,
  second: 1000,
  m: 60_000,
  min: 60_000,
  minute: 60_000,
  h: 3_600_000,
  hour: 3_600_000,
};

/** `'50/s'` → `{ max: 50, perMs: 1000 }`; undefined when malformed. */
export function parseRate(text: string): Rate | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*\/\s*(\S+)\s*$/.exec(text);
  if (!m) return undefined;
  const max = Number(m[1]);
  const unit = m[2]!;
  const perMs = UNITS[unit] ?? (/^\d/.test(unit) ? ms(unit as ms.StringValue) : undefined);
  if (!(max > 0) || typeof perMs !== 'number' || !(perMs > 0) || !Number.isFinite(max)) return undefined;
  return { max, perMs };
}

const rate = z.string().transform((value, ctx) => {
  const parsed = parseRate(value);
  if (!parsed) {
    ctx.addIssue({
      code: 'custom',
      message: `expected a rate like "50/s" or "10/min" (more than 0), got "${value}"`,
    });
    return z.NEVER;
  }
  return parsed;
});

const concurrency = z.number().int().positive().max(100_000);

export const tenantFunction = z
  .custom<(job: Job<never>) => string>((v) => typeof v === 'function', 'expected a function (job) => string')
  .optional();

export const limitsSchema = z
  .object({
    perKey: z.object({ rate: rate.optional(), concurrency: concurrency.optional() }).strict().optional(),
    perTenant: z
      .object({
        rate: rate.optional(),
        concurrency: concurrency.optional(),
        weights: z.record(z.string(), z.number().positive('a weight must be > 0').max(10_000)).optional(),
      })
      .strict()
      .optional(),
    store: z
      .custom<LimitStore>(
        (v) => typeof v === 'object' && v !== null && typeof (v as LimitStore).take === 'function',
        'expected a LimitStore (e.g. new RedisLimitStore({ host, port }))',
      )
      .optional(),
    onStoreError: z.enum(['open', 'closed']).default('open'),
    fair: z.boolean().default(true),
    maxDeferred: z.number().int().min(0).max(1_000_000).default(10_000),
    metricsTopTenants: z.number().int().min(0).max(1000).default(10),
  })
  .strict()
  .refine((l) => l.store === undefined || l.perTenant?.rate !== undefined, {
    message: 'a store holds per-tenant rate buckets: give limits.perTenant.rate too',
    path: ['store'],
  })
  .optional();

export type ResolvedLimits = NonNullable<z.output<typeof limitsSchema>>;

/** Tenants and limits are per job; a batch's jobs share one start (not supported together yet). */
export const limitsWithoutBatches = {
  check: (o: { batchHandler?: unknown; limits?: unknown; tenant?: unknown }) =>
    o.batchHandler === undefined || (o.limits === undefined && o.tenant === undefined),
  params: { message: 'tenants and limits work with handler, not with batchHandler (yet)', path: ['limits'] },
};

/** The `tenant` function threw or returned a non-string: the job goes to the DLQ, reason `bad-tenant`. */
export class BadTenantError extends NonRetriableError {}
