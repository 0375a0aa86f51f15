import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { createKafka, type KafkaConnection, Partitioners, type Producer } from '../kafka/client.js';
import { type TopicTail, tailTopics } from '../kafka/tail.js';
import type { Logger } from '../observability/logger.js';
import type { QueueMetrics } from '../observability/metrics.js';
import type { TopicNames } from '../topology/topics.js';
import {
  CONTROL_TOPIC,
  parseControl,
  SNAPSHOT_INTERVAL_MS,
  STATUS_TOPIC,
  type WorkerSnapshot,
  type WorkerState,
} from './snapshot.js';
import { ensureStatusTopics } from './topics.js';

/**
 * What the agent needs from a worker: the `Worker` facade has all of it. A structural type, so
 * src/status does not import src/worker (the worker imports the agent).
 */
export interface StatusSource {
  readonly workerId: string;
  readonly options: {
    readonly topic: string;
    readonly groupId: string;
    readonly concurrency: number;
    readonly brokers?: string[] | undefined;
    /** The full connection (its optional fields may be explicitly undefined). */
    readonly kafka?: { readonly brokers: readonly string[] } | undefined;
    readonly retry: { readonly tiers: readonly number[] };
    /** Tenants and limits (the snapshot then carries the waiting tenants). */
    readonly tenant?: unknown;
    readonly limits?: unknown;
    readonly autoscale: {
      readonly targetLagPerReplica: number;
      readonly minReplicas: number;
      readonly maxReplicas: number;
      readonly scaleDownWindowMs: number;
    };
  };
  readonly topics: TopicNames;
  readonly buffered: { jobs: number; bytes: number };
  readonly inflight: number;
  readonly ready: boolean;
  readonly metrics: QueueMetrics;
  readonly logger: Logger;
  assignment(): { topic: string; partition: number }[];
  pause(): void;
  resume(): void;
}

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

const VERSION = packageVersion();

async function counterSum(
  metric: { get(): Promise<{ values: { value: number; labels: Record<string, unknown> }[] }> },
  label?: [string, string],
): Promise<number> {
  const { values } = await metric.get();
  return values
    .filter((v) => !label || String(v.labels[label[0]]) === label[1])
    .reduce((sum, v) => sum + v.value, 0);
}

/** This worker's series of a metric (a registry may be shared by several workers). */
async function ownSeries(
  metric: { get(): Promise<{ values: { value: number; labels: Record<string, unknown> }[] }> },
  own: { topic: string; groupId: string },
): Promise<{ value: number; labels: Record<string, unknown> }[]> {
  const { values } = await metric.get();
  return values.filter((v) => v.labels.topic === own.topic && v.labels.group === own.groupId);
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise,
    new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * The worker's side of the console: every 5 s a status snapshot to `__strand_status` (key = worker
 * id; a tombstone on stop), and the group's pause/resume commands from `__strand_control`.
 *
 * Nothing here is on a job's path: counters are read from the worker's prom-client registry when
 * a snapshot is taken. A broker that refuses the topics or the writes costs a warning, never the
 * worker. `STRAND_STATUS=off` turns the agent off.
 */
export class StatusAgent {
  private readonly startedAt = Date.now();
  private producer: Producer | undefined;
  private tail: TopicTail | undefined;
  private timer: NodeJS.Timeout | undefined;
  private sending: Promise<void> | undefined;
  private stopped = false;
  /** The control state this agent applied (pause/resume through the control topic). */
  private paused = false;
  private restartsWhenReady = 0;
  private warned = false;

  private constructor(
    private readonly source: StatusSource,
    private readonly connection: KafkaConnection,
  ) {
    void this.open().catch((error: unknown) => {
      if (this.stopped) return;
      source.logger.warn(
        { err: error },
        'status agent could not start; the console will not see this worker',
      );
    });
  }

  /** Starts the agent in the background (a worker's start never waits for it); undefined when off. */
  static start(source: StatusSource): StatusAgent | undefined {
    if (/^(0|off|false)$/i.test(process.env.STRAND_STATUS ?? '')) return undefined;
    const o = source.options;
    const connection = { ...(o.kafka ?? { brokers: [] }) } as KafkaConnection;
    if (o.brokers) connection.brokers = o.brokers;
    connection.clientId = `strand-status-${o.groupId}`;
    return new StatusAgent(source, connection);
  }

  private async open(): Promise<void> {
    const kafka = createKafka(this.connection);
    const admin = kafka.admin();
    await admin.connect();
    try {
      await ensureStatusTopics(admin);
    } finally {
      await admin.disconnect();
    }
    if (this.stopped) return;
    const producer = kafka.producer({
      createPartitioner: Partitioners.DefaultPartitioner,
      allowAutoTopicCreation: false,
      retry: { retries: 3 },
    });
    await producer.connect();
    // stop() does not wait for the start: whatever opens after it is closed here.
    if (this.stopped) {
      await producer.disconnect().catch(() => undefined);
      return;
    }
    this.producer = producer;
    this.timer = setInterval(() => void this.publish(), SNAPSHOT_INTERVAL_MS);
    this.timer.unref();
    void this.publish();
    const group = this.source.options.groupId;
    const tail = await tailTopics(this.connection, {
      topics: [CONTROL_TOPIC],
      groupPrefix: `strand-agent-${this.source.workerId}`,
      onRecord: (_topic, _partition, m) => {
        if (m.key?.toString('utf8') !== group) return;
        const command = parseControl(m.value);
        if (command) this.apply(command.action);
      },
    });
    if (this.stopped) await tail.stop();
    else this.tail = tail;
  }

  private apply(action: 'pause' | 'resume'): void {
    if (this.stopped) return;
    const pause = action === 'pause';
    if (pause === this.paused) return;
    this.paused = pause;
    if (pause) this.source.pause();
    else this.source.resume();
    this.source.logger.info({ group: this.source.options.groupId }, `intake ${action}d from the console`);
    void this.publish();
  }

  private async state(): Promise<WorkerState> {
    if (this.paused) return 'paused';
    const restarts = await counterSum(this.source.metrics.consumerRestarts);
    if (this.source.ready) {
      this.restartsWhenReady = restarts;
      return 'running';
    }
    return restarts > this.restartsWhenReady ? 'restarting' : 'rebalancing';
  }

  /** The snapshot as of now. */
  async snapshot(): Promise<WorkerSnapshot> {
    const s = this.source;
    const o = s.options;
    const { jobs, failures, oldestPendingAge } = s.metrics;
    return {
      v: 1,
      workerId: s.workerId,
      group: o.groupId,
      topic: o.topic,
      tiers: s.topics.tiers.map((topic, i) => ({ topic, delayMs: o.retry.tiers[i] ?? 0 })),
      dlq: s.topics.dlq,
      host: hostname(),
      pid: process.pid,
      version: VERSION,
      state: await this.state(),
      startedAt: this.startedAt,
      at: Date.now(),
      assigned: s.assignment(),
      inflight: s.inflight,
      concurrency: o.concurrency,
      buffered: { ...s.buffered },
      counters: {
        completed: await counterSum(jobs, ['outcome', 'completed']),
        failed: await counterSum(failures),
        retried: await counterSum(jobs, ['outcome', 'retried']),
        dead: await counterSum(jobs, ['outcome', 'dead_lettered']),
        duplicate: await counterSum(jobs, ['outcome', 'duplicate']),
      },
      oldestPendingAgeSeconds: await counterSum(oldestPendingAge),
      rssBytes: process.memoryUsage.rss(),
      ...(o.tenant !== undefined || o.limits !== undefined ? { tenants: await this.tenants() } : {}),
      autoscale: { ...o.autoscale },
    };
  }

  /** From the tenant metrics: reading `queue_tenant_waiting` samples the tenants and flushes the limit counts. */
  private async tenants(): Promise<NonNullable<WorkerSnapshot['tenants']>> {
    const { metrics, options: o } = this.source;
    const waiting = (await ownSeries(metrics.tenantWaiting, o))
      .map((v) => ({ tenant: String(v.labels.tenant), jobs: v.value }))
      .sort((a, b) => b.jobs - a.jobs);
    const limited: Record<string, number> = {};
    for (const v of await ownSeries(metrics.limited, o)) limited[String(v.labels.limit)] = v.value;
    const deferred = (await ownSeries(metrics.deferredRecords, o)).reduce((sum, v) => sum + v.value, 0);
    return { waiting, limited, deferred };
  }

  private publish(): Promise<void> {
    // One send at a time: with the broker away, snapshots are skipped rather than queued.
    if (this.sending || this.stopped || !this.producer) return this.sending ?? Promise.resolve();
    const producer = this.producer;
    this.sending = (async () => {
      try {
        const snapshot = await this.snapshot();
        await producer.send({
          topic: STATUS_TOPIC,
          messages: [{ key: snapshot.workerId, value: JSON.stringify(snapshot) }],
        });
        this.warned = false;
      } catch (error) {
        if (!this.warned) this.source.logger.warn({ err: error }, 'status snapshot not published');
        this.warned = true;
      } finally {
        this.sending = undefined;
      }
    })();
    return this.sending;
  }

  /** Publishes the tombstone and disconnects (bounded: a stopping worker does not wait long). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
    await withTimeout(this.sending ?? Promise.resolve(), 2000);
    const producer = this.producer;
    if (producer) {
      await withTimeout(
        producer.send({ topic: STATUS_TOPIC, messages: [{ key: this.source.workerId, value: null }] }),
        3000,
      ).catch(() => undefined);
      await producer.disconnect().catch(() => undefined);
    }
    await this.tail?.stop();
  }
}
