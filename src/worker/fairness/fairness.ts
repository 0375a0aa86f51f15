import type { Logger } from '../../observability/logger.js';
import type { QueueMetrics } from '../../observability/metrics.js';
import type { FetchedRecord, JobDecoder, RecordReadPort } from '../../ports.js';
import type { Clock } from '../../timing/clock.js';
import type { Job } from '../job.js';
import type { JobBuffer } from '../job-buffer.js';
import type { ResolvedWorkerOptions } from '../options.js';
import type { PartitionTracker } from '../partition-tracker.js';
import type { WorkItem } from '../work-item.js';
import { Deferral } from './deferral.js';
import { SharedTenantTokens } from './shared-tokens.js';
import { LocalTenantTokens, NO_TENANT, TenantQueue, type TenantTokens } from './tenant-queue.js';

/** How long the intake waits for a writer schema to tell a job's tenant before it takes the job without one. */
const TENANT_DECODE_WAIT_MS = 2000;

/**
 * Tenants and limits of one worker (docs/architecture.md, "Tenants and limits"): tells each job's
 * tenant, holds the dispatcher's tenant queue (weighted turns, limits), and publishes
 * `queue_tenant_waiting` (top N tenants + `other`) and `queue_limited_total`.
 */
export class Fairness {
  readonly tenants: TenantQueue<WorkItem>;
  private readonly tenantOf: ((job: Job<unknown>) => string) | undefined;
  readonly weights: Readonly<Record<string, number>>;

  static create(
    o: ResolvedWorkerOptions,
    deps: {
      clock: Clock;
      decoder: JobDecoder;
      logger: Logger;
      metrics: QueueMetrics;
      reader?: RecordReadPort | undefined;
    },
  ): Fairness | undefined {
    if (o.tenant === undefined && o.limits === undefined) return undefined;
    return new Fairness(o, deps);
  }

  private constructor(
    private readonly o: ResolvedWorkerOptions,
    private readonly deps: {
      clock: Clock;
      decoder: JobDecoder;
      logger: Logger;
      metrics: QueueMetrics;
      reader?: RecordReadPort | undefined;
    },
  ) {
    const { clock, metrics } = deps;
    const limits = o.limits;
    const labels = { topic: o.topic, group: o.groupId };
    const now = () => clock.now();
    this.tenantOf = o.tenant as ((job: Job<unknown>) => string) | undefined;
    this.weights = limits?.perTenant?.weights ?? {};
    const counts = new Map<string, number>();
    const limited = (limit: string) => counts.set(limit, (counts.get(limit) ?? 0) + 1);
    let tokens: TenantTokens | undefined;
    const rate = limits?.perTenant?.rate;
    if (rate && limits?.store) {
      tokens = new SharedTenantTokens({
        store: limits.store,
        rate,
        bucketPrefix: `strand:limit:${o.groupId}:${o.topic}:`,
        onError: limits.onStoreError,
        local: new LocalTenantTokens(rate, now),
        now,
        wake: () => this.tenants.wake?.(),
        failed: (error) => {
          limited('store_error');
          if (!this.storeErrorLogged)
            deps.logger.warn(
              { err: error },
              `limit store failed; ${limits.onStoreError === 'open' ? 'per-worker buckets until it answers (logged once)' : 'tenant jobs wait until it answers (logged once)'}`,
            );
          this.storeErrorLogged = true;
        },
      });
    } else if (rate) tokens = new LocalTenantTokens(rate, now);
    this.tenants = new TenantQueue<WorkItem>({
      weights: this.weights,
      fair: limits?.fair ?? true,
      tenantConcurrency: limits?.perTenant?.concurrency,
      tenantTokens: tokens,
      keyConcurrency: limits?.perKey?.concurrency,
      keyRate: limits?.perKey?.rate,
      now,
      limited,
    });
    // Counted as plain numbers on the dispatch path, added to the counter when scraped.
    const flushed = new Map<string, number>();
    metrics.sampleOnScrape(metrics.tenantWaiting, () => {
      metrics.tenantWaiting.reset();
      for (const [tenant, n] of this.topWaiting(limits?.metricsTopTenants ?? 10))
        metrics.tenantWaiting.set({ ...labels, tenant }, n);
      for (const [limit, n] of counts) {
        const d = n - (flushed.get(limit) ?? 0);
        if (d > 0) metrics.limited.inc({ ...labels, limit }, d);
        flushed.set(limit, n);
      }
    });
  }

  private storeErrorLogged = false;

  /** The intake's deferral of over-share tenants' records (none without a reader, with `fair: false` or `maxDeferred: 0`). */
  deferral(deps: {
    buffer: JobBuffer;
    clock: Clock;
    current: (tracker: PartitionTracker) => boolean;
    passed: (tracker: PartitionTracker) => void;
    take: (tracker: PartitionTracker, record: FetchedRecord) => Promise<void>;
  }): Deferral | undefined {
    const { o } = this;
    const { reader, logger, metrics } = this.deps;
    if (!reader || o.limits?.fair === false || o.limits?.maxDeferred === 0 || o.ordering === 'partition')
      return undefined;
    const deferral = new Deferral({
      ...deps,
      fairness: this,
      maxBufferedJobs: o.maxBufferedJobs,
      maxDeferred: o.limits?.maxDeferred ?? 10_000,
      ordering: o.ordering,
      reader,
      logger,
    });
    metrics.sampleOnScrape(metrics.deferredRecords, () =>
      metrics.deferredRecords.set({ topic: o.topic, group: o.groupId }, deferral.count),
    );
    return deferral;
  }

  /** The `n` tenants with the most runnable jobs, and the rest summed as `other`. */
  topWaiting(n: number): [string, number][] {
    const all = [...this.tenants.waitingByTenant()].sort((a, b) => b[1] - a[1]);
    const top: [string, number][] = all.slice(0, n).map(([t, c]) => [t === NO_TENANT ? 'none' : t, c]);
    const rest = all.slice(n).reduce((sum, [, c]) => sum + c, 0);
    if (all.length > n) top.push(['other', rest]);
    return top;
  }

  weightOf(tenant: string): number {
    return this.weights[tenant] ?? 1;
  }

  /**
   * Tells the item's tenant (and keeps its data, so it is not decoded twice). A promise only when
   * its writer schema must be fetched first; a tenant function that throws or returns a non-string
   * marks the job for the DLQ (`bad-tenant`); an undecodable record has no tenant (it is
   * dead-lettered as undecodable).
   */
  resolve(item: WorkItem): Promise<void> | undefined {
    if (!this.tenantOf || item.value === null) {
      item.tenant = NO_TENANT;
      return undefined;
    }
    const { decoder } = this.deps;
    try {
      const cached = decoder.decodeCached?.(item.value);
      if (cached) {
        this.apply(item, cached);
        return undefined;
      }
    } catch {
      item.tenant = NO_TENANT;
      return undefined;
    }
    const decoded = decoder.decode(item.value).then(
      (d) => this.apply(item, d),
      // Undecodable: dead-lettered by the executor. Registry down: the job waits there anyway.
      () => (item.tenant = NO_TENANT),
    );
    const timeout = new Promise<void>((r) =>
      this.deps.clock.setTimeout(r, TENANT_DECODE_WAIT_MS, { unref: true }),
    );
    return Promise.race([decoded.then(() => undefined), timeout]).then(() => {
      item.tenant ??= NO_TENANT;
    });
  }

  private apply(item: WorkItem, decoded: { data: unknown }): void {
    item.decoded = decoded;
    const job: Job<unknown> = {
      id: item.jobId,
      key: item.key,
      data: decoded.data,
      attempt: item.attempt,
      get headers() {
        return item.headers;
      },
      topic: item.topic,
      partition: item.partition,
      offset: item.offset,
      enqueuedAt: undefined,
    };
    try {
      const tenant = this.tenantOf!(job);
      if (typeof tenant === 'string') item.tenant = tenant;
      else {
        item.tenant = NO_TENANT;
        item.tenantError = `tenant function returned ${tenant === null ? 'null' : typeof tenant}, not a string`;
      }
    } catch (error) {
      item.tenant = NO_TENANT;
      item.tenantError = `tenant function threw: ${error instanceof Error ? error.message : String(error)}`;
    }
  }
}
