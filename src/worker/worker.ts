import type { EventEmitter } from 'node:events';
import type { Server } from 'node:http';
import { hostname } from 'node:os';
import { AvroCodec, SchemaRegistryGateway } from '../codec/index.js';
import { StrandError } from '../errors.js';
import { MemoryIdempotencyStore } from '../idempotency/memory-store.js';
import type { IdempotencyStore } from '../idempotency/store.js';
import {
  type Admin,
  createKafka,
  explainConnectError,
  type KafkaConnection,
  Partitioners,
  type Producer,
} from '../kafka/client.js';
import { KafkaParkingPort, type ParkingFencing } from '../kafka/parking-port.js';
import { KafkaTransactionPort } from '../kafka/round-port.js';
import { partitionCounts } from '../kafka/send.js';
import { ensureParkingTopic } from '../kafka/topics.js';
import { KafkaConsumerPort, KafkaProducePort } from '../kafka/worker-port.js';
import {
  computeLag,
  DesiredReplicas,
  dlqDepth,
  type PartitionLag,
  tierDelaysOf,
  totalLag,
} from '../lag/lag.js';
import { startMetricsServer } from '../observability/http.js';
import { createLogger, kafkaLogSink, type Logger } from '../observability/logger.js';
import { QueueMetrics } from '../observability/metrics.js';
import { StatusAgent } from '../status/agent.js';
import { every, systemClock } from '../timing/clock.js';
import { findDelayBuckets } from '../topology/delays.js';
import { type TopicNames, topicNames } from '../topology/topics.js';
import { WorkerCore, type WorkerEvents } from './core.js';
import { EVENTS, WorkerEmitter } from './events.js';
import { FollowUpProducers } from './follow-up-producers.js';
import { type ResolvedWorkerOptions, resolveWorkerOptions, type WorkerOptions } from './options.js';
import { KeyParking } from './parked-keys.js';

export type { WorkerEvents } from './core.js';

type Phase = 'new' | 'starting' | 'running' | 'stopping' | 'stopped';

/** Lag refreshes that may fail in a row (start-up, a broker restart) before a warning. */
const LAG_FAILURES_BEFORE_WARNING = 3;

/**
 * A consumer-group worker: per-key ordering with concurrency beyond the partition count, commits
 * only after each job (and every earlier one of its partition) reached an outcome, failure routing
 * through retry tiers to a DLQ, bounded memory, graceful shutdown and rebalances.
 *
 * This class is the lifecycle around the core (docs/architecture.md): it connects the kafkajs
 * clients, checks the topics, serves /metrics, /healthz and /readyz, publishes lag, DLQ depth and
 * the desired replica count, and starts and stops the `WorkerCore` that does the work.
 */
export class Worker<T = Record<string, unknown>> extends WorkerEmitter {
  readonly options: ResolvedWorkerOptions;
  readonly topics: TopicNames;
  readonly metrics: QueueMetrics;
  readonly logger: Logger;
  readonly workerId = `${hostname()}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  /** The last lag reading (also exported as queue_depth_pending). */
  lastLag: PartitionLag[] = [];
  private lagFailures = 0;
  private readonly connection: KafkaConnection;
  private readonly codec: AvroCodec;
  private readonly registry: SchemaRegistryGateway;
  private readonly store: IdempotencyStore | undefined;
  /** The store this worker made (`'memory'`), closed with it; a store passed in is the caller's to close. */
  private readonly ownStore: boolean;
  private readonly desired: DesiredReplicas;
  private readonly labels: { topic: string; group: string };
  private phase: Phase = 'new';
  private starting: Promise<void> | undefined;
  private lookingForBuckets: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  private core: WorkerCore | undefined;
  private admin: Admin | undefined;
  private producer: Producer | undefined;
  private parking: KafkaParkingPort | undefined;
  private reader: KafkaParkingPort | undefined;
  private server: Server | undefined;
  private stopTimers: (() => void)[] = [];
  private followUps: FollowUpProducers | undefined; // of ctx.enqueue({ topic, schema })
  /** Status snapshots and pause/resume for the console (src/status/agent.ts). */
  private agent: StatusAgent | undefined;

  constructor(options: WorkerOptions<T>) {
    super();
    this.options = resolveWorkerOptions(options as unknown as WorkerOptions<never>);
    const o = this.options;
    this.logger = o.logger ?? createLogger({ name: 'strand-worker' });
    this.connection = { ...(o.kafka ?? { brokers: [] }) } as KafkaConnection;
    if (o.brokers) this.connection.brokers = o.brokers;
    this.topics = topicNames(o.topic, o.retry.tiers.length, o.dlqTopic ? { dlq: o.dlqTopic } : {});
    this.registry = new SchemaRegistryGateway(o.registry as never);
    this.codec = new AvroCodec(this.registry, o.readerSchema ? { readerSchema: o.readerSchema } : {});
    this.ownStore = o.idempotency?.store === 'memory';
    if (o.idempotency)
      this.store = o.idempotency.store === 'memory' ? new MemoryIdempotencyStore() : o.idempotency.store;
    this.metrics = new QueueMetrics();
    this.labels = { topic: o.topic, group: o.groupId };
    this.desired = new DesiredReplicas(o.autoscale);
    // The core's events reach this emitter only once somebody listens (per-job events are hot).
    (this as EventEmitter).on('newListener', (event: string | symbol) => {
      if (EVENTS.includes(event as keyof WorkerEvents)) this.forward(event as keyof WorkerEvents);
    });
  }

  private readonly forwarded = new Set<keyof WorkerEvents>();

  private forward(event: keyof WorkerEvents): void {
    if (!this.core || this.forwarded.has(event)) return;
    this.forwarded.add(event);
    this.core.on(event, (...args: unknown[]) => this.emit(event, ...(args as never)));
  }

  /** Accepted jobs not yet finished, and their bytes. */
  get buffered(): { jobs: number; bytes: number } {
    return this.core?.buffered ?? { jobs: 0, bytes: 0 };
  }

  /** Jobs running now. */
  get inflight(): number {
    return this.core?.inflight ?? 0;
  }

  /** Joined the group and holding an assignment (possibly empty), no partition stalled on its parked keys. */
  get ready(): boolean {
    return this.phase === 'running' && this.core?.joined === true && this.core.stalledParking.length === 0;
  }

  /** Partitions this worker owns now (none once stopped, whatever its last assignment was). */
  assignment(): { topic: string; partition: number }[] {
    if (this.phase === 'stopped') return [];
    return this.core?.assignedPartitions() ?? [];
  }

  /** Port of the metrics server (useful with `metrics: { port: 0 }`). */
  get metricsPort(): number | undefined {
    const address = this.server?.address();
    return typeof address === 'object' && address ? address.port : undefined;
  }

  /** Connects, checks the topics, serves metrics and joins the group (a failure: closed, one-line reason). */
  start(): Promise<void> {
    if (this.phase !== 'new')
      return Promise.reject(new StrandError('CONFIG', `worker already ${this.phase}`));
    this.phase = 'starting';
    this.starting = this.open().catch(async (error: unknown) => {
      await this.close();
      if (this.phase === 'starting') this.phase = 'new';
      throw error;
    });
    return this.starting;
  }

  /** False once `stop()` was called during the start. */
  private get proceeding(): boolean {
    return this.phase === 'starting';
  }

  private async open(): Promise<void> {
    const o = this.options;
    const clientId = `strand-${o.groupId}`;
    const kafka = createKafka({ clientId, ...this.connection }, kafkaLogSink(this.logger));
    const admin = kafka.admin();
    this.admin = admin;
    try {
      await admin.connect();
    } catch (error) {
      throw explainConnectError(error, this.connection);
    }
    const existing = new Set(await admin.listTopics());
    // Delayed jobs: the delay buckets that exist now (`strand topics create <topic> --delays`).
    this.topics.delays = findDelayBuckets(o.topic, existing);
    const subscribed = [this.topics.main, ...this.topics.tiers, ...this.topics.delays.map((b) => b.topic)];
    const missing = [...subscribed, this.topics.dlq].filter((t) => !existing.has(t));
    if (missing.length > 0) {
      const tiers = o.retry.tiers.map((d: number) => `${d}ms`).join(',') || '""';
      throw new StrandError(
        'KAFKA',
        `topic(s) ${missing.join(', ')} do not exist; create them with "strand topics create ${o.topic} --retry-tiers ${tiers}"`,
      );
    }
    const parks = KeyParking.wanted(o);
    if (parks) await ensureParkingTopic(admin, this.topics, existing.has(this.topics.parked), this.logger);
    if (!this.proceeding) return;
    this.producer = kafka.producer({
      // Every record gets an explicit partition (sendAcknowledged); this only silences kafkajs' v2 notice.
      createPartitioner: Partitioners.DefaultPartitioner,
      idempotent: true,
      maxInFlightRequests: 5,
      allowAutoTopicCreation: false,
      retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 100, maxRetryTime: 5000 },
    });
    await this.producer.connect();
    if (!this.proceeding) return;
    if (o.metrics) {
      // Up before the group join, so /readyz can say "not yet" and /healthz answers throughout.
      this.server = await startMetricsServer({
        port: o.metrics.port,
        host: o.metrics.host,
        registry: this.metrics.registry,
        ready: () => this.ready,
      });
      if (!this.proceeding) return;
    }
    const parkingConn = { ...this.connection, clientId };
    const read = (topic: string, fence?: ParkingFencing) =>
      new KafkaParkingPort(parkingConn, admin, this.producer!, topic, partitionCounts(admin), fence);
    // Parking writes are fenced: a transactional id per parking partition, taken by its owner.
    this.parking = parks ? read(this.topics.parked, { kafka, groupId: o.groupId }) : undefined;
    // Tenants: records deferred for fairness are read back by offset from the job topic.
    this.reader = o.tenant ? read(o.topic) : undefined;
    const transactions = KafkaTransactionPort.forWorker(o, kafka, partitionCounts(admin), this.logger);
    this.followUps = new FollowUpProducers(this.connection, o, this.logger);
    const core = new WorkerCore({
      options: o,
      topics: this.topics,
      consumer: new KafkaConsumerPort(kafka, admin, {
        groupId: o.groupId,
        topics: subscribed,
        fromBeginning: o.fromBeginning,
        sessionTimeoutMs: o.sessionTimeoutMs,
        heartbeatIntervalMs: o.heartbeatIntervalMs,
        rebalanceTimeoutMs: o.rebalanceTimeoutMs,
        partitionsConsumedConcurrently: KeyParking.partitionsTakenAtOnce(o),
        logger: this.logger,
      }),
      producer: new KafkaProducePort(this.producer, partitionCounts(admin), (partitions) =>
        this.logger.warn({ partitions }, 'partitions missing from the produce answer; sending them again'),
      ),
      parking: this.parking,
      reader: this.reader,
      transactions,
      decoder: this.codec,
      store: this.store,
      followUps: this.followUps,
      clock: systemClock,
      logger: this.logger,
      metrics: this.metrics,
      workerId: this.workerId,
      unknownTopic: () => void this.findNewDelayBuckets(),
    });
    this.core = core;
    for (const event of EVENTS) if (this.listenerCount(event) > 0) this.forward(event);
    await core.start();
    if (!this.proceeding) return;
    this.stopTimers = [
      every(systemClock, 1000, () => this.beat()),
      every(systemClock, o.lagIntervalMs, () => void this.refreshLag()),
    ];
    this.beat();
    void this.refreshLag();
    this.phase = 'running';
    this.logger.info(
      {
        topic: o.topic,
        group: o.groupId,
        worker: this.workerId,
        concurrency: o.concurrency,
        ordering: o.ordering,
      },
      'worker started',
    );
    if (o.status) this.agent = StatusAgent.start(this);
  }

  private beat(): void {
    this.metrics.heartbeat.set({ worker: this.workerId }, Date.now() / 1000);
    const oldest = this.core?.oldestAcceptedAt();
    this.metrics.oldestPendingAge.set(this.labels, oldest ? (Date.now() - oldest) / 1000 : 0);
  }

  /**
   * Delay buckets created after the start (`strand topics create <topic> --delays`): consumed from
   * now on. Looked for at every lag refresh, and when another member's subscription brings one.
   */
  private findNewDelayBuckets(): Promise<void> {
    this.lookingForBuckets ??= (async () => {
      const admin = this.admin;
      const core = this.core;
      if (!admin || !core || this.phase !== 'running') return;
      const found = findDelayBuckets(this.options.topic, await admin.listTopics());
      const known = new Set((this.topics.delays ?? []).map((b) => b.topic));
      const added = found.filter((b) => !known.has(b.topic));
      if (added.length === 0) return;
      this.logger.info(
        { buckets: added.map((b) => b.topic) },
        'delay buckets appeared; consuming them too (the group rebalances)',
      );
      await core.consumeDelayBuckets(found);
    })()
      .catch((error: unknown) =>
        this.logger.warn({ err: error }, 'could not look for new delay buckets; will try again'),
      )
      .finally(() => {
        this.lookingForBuckets = undefined;
      });
    return this.lookingForBuckets;
  }

  /** Reads lag, DLQ depth and the desired replica count from the broker. */
  async refreshLag(): Promise<PartitionLag[]> {
    if (!this.admin || this.phase !== 'running') return this.lastLag;
    void this.findNewDelayBuckets();
    try {
      const delayTopics = new Set((this.topics.delays ?? []).map((b) => b.topic));
      const lag = await computeLag(
        this.admin,
        this.options.groupId,
        [this.topics.main, ...this.topics.tiers, ...delayTopics],
        {
          tierDelays: tierDelaysOf(this.topics.tiers, this.options.retry.tiers),
          delayTopics,
        },
      );
      this.metrics.depthPending.reset();
      let delayed = 0;
      for (const l of lag) {
        if (delayTopics.has(l.topic)) delayed += l.lag;
        else
          this.metrics.depthPending.set(
            { topic: l.topic, partition: String(l.partition), group: this.options.groupId },
            l.lag,
          );
      }
      this.metrics.delayedJobs.set(this.labels, delayed);
      // Retry-tier records count once due: a tier full of jobs due in an hour needs no workers now.
      this.metrics.desiredReplicas.set(
        { group: this.options.groupId },
        this.desired.update(totalLag(lag, 'due')),
      );
      const dead = await dlqDepth(this.admin, this.topics.main, this.topics.dlq);
      this.metrics.dlqDepth.set({ topic: this.topics.main }, dead); // no group: the DLQ is the topic's
      this.lastLag = lag;
      this.lagFailures = 0;
    } catch (error) {
      // Right after start kafkajs' admin may not have the group's or the tiers' metadata yet (and
      // then fails inside itself: "Cannot destructure property 'partitions'"); only a failure
      // that lasts is worth a warning.
      this.lagFailures++;
      const reason = (error as Error).message?.split('\n')[0] ?? String(error);
      if (this.lagFailures === LAG_FAILURES_BEFORE_WARNING)
        this.logger.warn({ error: reason, failures: this.lagFailures }, 'cannot read lag; will keep trying');
      else this.logger.debug({ error: reason }, 'lag not readable yet');
    }
    return this.lastLag;
  }

  /** Stops starting jobs and pauses fetching; running jobs finish. */
  pause(): void {
    this.core?.pause();
  }

  resume(): void {
    this.core?.resume();
  }

  /**
   * Graceful stop: no new jobs; running jobs get `timeoutMs` (default `shutdownTimeoutMs`) before
   * their signals abort; then the final commit, and the consumer leaves the group. During a start,
   * the start ends first (without starting) and then everything it opened is closed.
   */
  stop(opts: { timeoutMs?: number } = {}): Promise<void> {
    if (this.phase === 'new') {
      this.phase = 'stopped';
      return Promise.resolve();
    }
    this.stopping ??= (async () => {
      this.phase = 'stopping';
      await this.starting?.catch(() => undefined);
      await this.core?.stop(opts);
      await this.close();
      this.phase = 'stopped';
      this.logger.info({ worker: this.workerId }, 'worker stopped');
    })();
    return this.stopping;
  }

  /** Closes everything `open()` opened, in reverse order; each step tolerates a never-opened part. */
  private async close(): Promise<void> {
    await this.agent?.stop();
    this.agent = undefined;
    for (const stop of this.stopTimers.splice(0)) stop();
    await this.core?.stop({ timeoutMs: 0 });
    await Promise.all([this.parking?.close(), this.reader?.close(), this.followUps?.close()]);
    await this.producer?.disconnect().catch(() => undefined);
    await this.admin?.disconnect().catch(() => undefined);
    const server = this.server;
    this.server = undefined;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    this.registry.close();
    if (this.ownStore) await this.store?.close?.();
  }
}
