import client from 'prom-client';
import { FastHistogram } from './fast-histogram.js';

/** Job outcomes counted in `queue_jobs_total`. */
export type Outcome = 'completed' | 'retried' | 'dead_lettered' | 'duplicate';

/** Outcome counts of one topic and group, bumped per job and flushed on scrape. */
export type OutcomeCounts = Record<Outcome, number>;

/**
 * The metrics contract (docs/metrics.md; docs/architecture.md). One instance per registry; a worker gets its own registry so
 * several workers in one process (tests, the demo) do not collide.
 */
export class QueueMetrics {
  readonly registry: client.Registry;
  readonly depthPending: client.Gauge<'topic' | 'partition' | 'group'>;
  readonly oldestPendingAge: client.Gauge<'topic' | 'group'>;
  readonly inflight: client.Gauge<'topic' | 'group'>;
  readonly jobs: client.Counter<'topic' | 'group' | 'outcome'>;
  readonly processingLatency: FastHistogram;
  readonly endToEndLatency: FastHistogram;
  readonly batchSize: FastHistogram;
  readonly retries: client.Counter<'topic' | 'group' | 'tier'>;
  readonly failures: client.Counter<'topic' | 'group' | 'error_class'>;
  readonly dlqDepth: client.Gauge<'topic'>;
  readonly rebalances: client.Counter<'group'>;
  readonly consumerRestarts: client.Counter<'group'>;
  readonly stuckJobs: client.Gauge<'topic' | 'group'>;
  readonly offsetMapBytes: client.Gauge<'topic' | 'partition' | 'group'>;
  readonly heartbeat: client.Gauge<'worker'>;
  readonly desiredReplicas: client.Gauge<'group'>;
  readonly delayedJobs: client.Gauge<'topic' | 'group'>;
  readonly parkedKeys: client.Gauge<'topic' | 'group'>;
  readonly parkedJobs: client.Gauge<'topic' | 'group'>;
  readonly tenantWaiting: client.Gauge<'topic' | 'group' | 'tenant'>;
  readonly limited: client.Counter<'topic' | 'group' | 'limit'>;
  readonly deferredRecords: client.Gauge<'topic' | 'group'>;

  /**
   * Job outcomes counted on the per-job path as plain numbers, added to `queue_jobs_total` when it
   * is scraped (a prom-client counter hashes its labels on every `inc`).
   */
  outcomeCounts(labels: { topic: string; group: string }): OutcomeCounts {
    const counts: OutcomeCounts = { completed: 0, retried: 0, dead_lettered: 0, duplicate: 0 };
    const flushed: OutcomeCounts = { ...counts };
    this.flushes.push(() => {
      for (const outcome of Object.keys(counts) as Outcome[]) {
        const delta = counts[outcome] - flushed[outcome];
        if (delta > 0) {
          this.jobs.inc({ ...labels, outcome }, delta);
          flushed[outcome] = counts[outcome];
        }
      }
    });
    return counts;
  }

  private readonly flushes: (() => void)[] = [];

  /** Runs `sample` whenever `metric` is scraped (for values that change per job). */
  sampleOnScrape(metric: client.Gauge<string>, sample: () => void): void {
    (metric as unknown as { collect?: () => void }).collect = sample;
  }

  constructor(opts: { registry?: client.Registry; defaultMetrics?: boolean } = {}) {
    this.registry = opts.registry ?? new client.Registry();
    const registers = [this.registry];
    if (opts.defaultMetrics !== false) client.collectDefaultMetrics({ register: this.registry });
    const latencyBuckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
    this.depthPending = new client.Gauge({
      name: 'queue_depth_pending',
      help: 'Jobs still to process per partition: log-end offset minus committed offset minus jobs finished above it (offset map)',
      labelNames: ['topic', 'partition', 'group'],
      registers,
    });
    this.oldestPendingAge = new client.Gauge({
      name: 'queue_oldest_pending_age_seconds',
      help: 'Age of the oldest accepted, unfinished job',
      labelNames: ['topic', 'group'],
      registers,
    });
    this.inflight = new client.Gauge({
      name: 'queue_inflight_jobs',
      help: 'Jobs running now',
      labelNames: ['topic', 'group'],
      registers,
    });
    this.jobs = new client.Counter({
      name: 'queue_jobs_total',
      help: 'Jobs by outcome: completed, retried, dead_lettered, duplicate',
      labelNames: ['topic', 'group', 'outcome'],
      registers,
      collect: () => {
        for (const flush of this.flushes) flush();
      },
    });
    this.processingLatency = new FastHistogram(
      'queue_processing_latency_seconds',
      'Handler duration',
      latencyBuckets,
      registers,
    );
    this.endToEndLatency = new FastHistogram(
      'queue_end_to_end_latency_seconds',
      'From strand-enqueued-at to completion',
      latencyBuckets,
      registers,
    );
    this.batchSize = new FastHistogram(
      'queue_batch_size',
      'Jobs per batch handler call (batchHandler workers only)',
      [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000],
      registers,
    );
    this.retries = new client.Counter({
      name: 'queue_retries_total',
      help: 'Records sent to each retry tier',
      labelNames: ['topic', 'group', 'tier'],
      registers,
    });
    this.failures = new client.Counter({
      name: 'queue_failures_total',
      help: 'Handler and decode failures by error class',
      labelNames: ['topic', 'group', 'error_class'],
      registers,
    });
    // Labelled by the job topic only: its DLQ is shared by every consumer group of the topic, and a
    // group label would make a sum over groups count the same dead jobs once per group.
    this.dlqDepth = new client.Gauge({
      name: 'queue_dlq_depth',
      help: "Dead-lettered records in the job topic's DLQ not yet replayed (one value per topic, whichever groups share it)",
      labelNames: ['topic'],
      registers,
    });
    this.rebalances = new client.Counter({
      name: 'queue_rebalances_total',
      help: 'Assignments received',
      labelNames: ['group'],
      registers,
    });
    this.consumerRestarts = new client.Counter({
      name: 'queue_consumer_restarts_total',
      help: 'Consumer crashes kafkajs would not recover from, restarted by the worker',
      labelNames: ['group'],
      registers,
    });
    this.stuckJobs = new client.Gauge({
      name: 'queue_stuck_jobs',
      help: 'Handlers still running jobTimeoutMs after their signal aborted (slot given back, key held)',
      labelNames: ['topic', 'group'],
      registers,
    });
    this.offsetMapBytes = new client.Gauge({
      name: 'queue_offset_map_bytes',
      help: 'Size of the offset map in the last commit metadata, per partition (limit 4096)',
      labelNames: ['topic', 'partition', 'group'],
      registers,
    });
    this.heartbeat = new client.Gauge({
      name: 'queue_worker_heartbeat_timestamp_seconds',
      help: 'Last worker loop heartbeat',
      labelNames: ['worker'],
      registers,
    });
    this.delayedJobs = new client.Gauge({
      name: 'queue_delayed_jobs',
      help: 'Delayed jobs not yet moved to the job topic (records pending in its delay buckets); not lag',
      labelNames: ['topic', 'group'],
      registers,
    });
    this.parkedKeys = new client.Gauge({
      name: 'queue_parked_keys',
      help: 'Keys waiting behind a job in a retry tier (retry.ordering strict), on the partitions this worker owns',
      labelNames: ['topic', 'group'],
      registers,
    });
    this.parkedJobs = new client.Gauge({
      name: 'queue_parked_jobs',
      help: "Jobs parked behind their key's failed job (retry.ordering strict), on the partitions this worker owns",
      labelNames: ['topic', 'group'],
      registers,
    });
    this.tenantWaiting = new client.Gauge({
      name: 'queue_tenant_waiting',
      help: 'Runnable jobs waiting per tenant (the limits.metricsTopTenants most waiting, the rest as "other")',
      labelNames: ['topic', 'group', 'tenant'],
      registers,
    });
    this.limited = new client.Counter({
      name: 'queue_limited_total',
      help: 'Times a runnable job was passed over for a limit (key_rate, key_concurrency, tenant_rate, tenant_concurrency), or the limit store failed (store_error)',
      labelNames: ['topic', 'group', 'limit'],
      registers,
    });
    this.deferredRecords = new client.Gauge({
      name: 'queue_deferred_records',
      help: 'Job-topic records the intake deferred (an over-share tenant) and will read again, on the partitions this worker owns',
      labelNames: ['topic', 'group'],
      registers,
    });
    this.desiredReplicas = new client.Gauge({
      name: 'queue_desired_replicas',
      help: 'clamp(ceil(due lag / target per replica), min, max); retry-tier records count once due',
      labelNames: ['group'],
      registers,
    });
  }
}
