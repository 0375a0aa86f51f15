import type { Server } from 'node:http';
import type pg from 'pg';
import { z } from 'zod';
import type { RegistryOptions } from '../codec/index.js';
import { type Compatibility, SchemaRegistryGateway } from '../codec/index.js';
import { compatibilitySchema, connectionSchema, parseOptions, registrySchema } from '../config/index.js';
import {
  type Admin,
  createKafka,
  type KafkaConnection,
  Partitioners,
  type Producer,
} from '../kafka/client.js';
import { startMetricsServer } from '../observability/http.js';
import { createLogger, kafkaLogSink, type Logger } from '../observability/logger.js';
import { backoffDelay, retryPolicies } from '../timing/backoff.js';
import { sleep, systemClock } from '../timing/clock.js';
import { loadPg } from './driver.js';
import { OutboxMetrics } from './metrics.js';
import { describeFault, outboxBacklog, redactUrl } from './pg.js';
import { OutboxPublisher, type OutboxRow } from './publish.js';
import { lockSpaces, OUTBOX_CHANNEL, OUTBOX_SHARDS, type OutboxTable, outboxTable } from './table.js';

/** Options of an {@link OutboxRelay}. */
export interface OutboxRelayOptions {
  /** The PostgreSQL holding the outbox: a connection URL (`postgres://user@host:5432/db`). */
  databaseUrl: string;
  /** Bootstrap brokers (`host:port`). Shorthand for `kafka.brokers`. */
  brokers?: string[];
  /** Full connection settings (TLS, SASL, timeouts). */
  kafka?: KafkaConnection;
  /** Schema registry (Confluent API). */
  registry: RegistryOptions;
  /** The outbox table. @defaultValue `'strand_outbox'` */
  table?: string;
  /** Rows read, published and removed at a time. @defaultValue 500 */
  batchSize?: number;
  /** Look for rows this often without a notification (NOTIFY lost, or rows written by hand). @defaultValue 1000 */
  pollIntervalMs?: number;
  /** A standby tries to take over the shards no relay holds this often. @defaultValue 1000 */
  takeoverIntervalMs?: number;
  /** Register a row's schema on first use; `false` only looks it up. @defaultValue true */
  autoRegister?: boolean;
  /** Compatibility rule set on a new subject. @defaultValue `'BACKWARD'` */
  compatibility?: Compatibility;
  /** How often the pending count and oldest age are read. @defaultValue 5000 */
  statsIntervalMs?: number;
  /** Serve `/metrics`, `/healthz`, `/readyz` on this port (0: any free port). */
  metrics?: { port: number; host?: string };
  /** pino logger. @defaultValue a logger at `STRAND_LOG_LEVEL` */
  logger?: Logger;
}

const optionsSchema = z
  .object({
    databaseUrl: z
      .string()
      .refine((u) => /^postgres(ql)?:\/\/./.test(u), 'expected postgres://user@host:port/database'),
    brokers: connectionSchema.shape.brokers.optional(),
    kafka: connectionSchema.optional(),
    registry: registrySchema,
    table: z.string().optional(),
    batchSize: z.number().int().min(1).max(10_000).default(500),
    pollIntervalMs: z.number().int().min(10).default(1000),
    takeoverIntervalMs: z.number().int().min(10).default(1000),
    autoRegister: z.boolean().default(true),
    compatibility: compatibilitySchema,
    statsIntervalMs: z.number().int().min(100).default(5000),
    metrics: z
      .object({ port: z.number().int().min(0).max(65535), host: z.string().default('0.0.0.0') })
      .optional(),
    logger: z.custom<Logger>().optional(),
  })
  .strict()
  .refine((o) => o.brokers !== undefined || o.kafka !== undefined, {
    message: 'expected brokers or kafka.brokers',
    path: ['brokers'],
  });

const ALL_SHARDS = Array.from({ length: OUTBOX_SHARDS }, (_, i) => i);

/**
 * Publishes committed outbox rows to Kafka and removes them once every record is acknowledged.
 * One session = one PostgreSQL connection that LISTENs for new rows and holds the advisory locks
 * of the key shards this relay publishes; several relays share the shards, one holder each, and a
 * standby takes the shards of a relay whose session ended within `takeoverIntervalMs`. Any fault
 * (database, Kafka, registry) ends the session — releasing its shards — and a new one starts
 * after the `outbox` backoff; the relay stops only on `stop()`.
 */
export class OutboxRelay {
  readonly table: OutboxTable;
  readonly metrics: OutboxMetrics;
  private readonly opts: z.output<typeof optionsSchema>;
  private readonly logger: Logger;
  private readonly producer: Producer;
  private readonly admin: Admin;
  private readonly registry: SchemaRegistryGateway;
  private readonly publisher: OutboxPublisher;
  private readonly owned = new Set<number>();
  /** Job topics this relay saw rows of: their gauges read 0 once nothing waits (not "no data"). */
  private readonly topicsSeen = new Set<string>();
  private readonly abort = new AbortController();
  private wakeUp: (() => void) | undefined;
  private woken = false;
  private loop: Promise<void> | undefined;
  private kafkaUp = false;
  private server: Server | undefined;
  private lastFault = { line: '', at: 0 };
  /** Rows published (acknowledged) and rows dead-lettered by this relay since it started. */
  readonly counts = { published: 0, deadLettered: 0, sessions: 0 };

  constructor(options: OutboxRelayOptions) {
    this.opts = parseOptions(optionsSchema, options, 'outbox relay');
    this.table = outboxTable(this.opts.table);
    this.logger = this.opts.logger ?? createLogger({ name: 'strand-outbox-relay' });
    const conn: KafkaConnection = { ...(this.opts.kafka ?? { brokers: [] }) } as KafkaConnection;
    if (this.opts.brokers) conn.brokers = this.opts.brokers;
    const kafka = createKafka({ clientId: 'strand-outbox-relay', ...conn }, kafkaLogSink(this.logger));
    this.producer = kafka.producer({
      createPartitioner: Partitioners.DefaultPartitioner,
      idempotent: true,
      maxInFlightRequests: 5,
      allowAutoTopicCreation: false,
      // Unlimited, as JobProducer: the idempotent producer's no-duplicate, in-order guarantee needs
      // it (kafkajs warns otherwise). A broker outage holds the batch (kafkajs' complaints are logged);
      // the rows stay until Kafka acknowledges them.
      retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 100, maxRetryTime: 5000 },
    });
    this.admin = kafka.admin();
    this.registry = new SchemaRegistryGateway(this.opts.registry as never);
    this.metrics = new OutboxMetrics();
    this.publisher = new OutboxPublisher({
      producer: this.producer,
      admin: this.admin,
      registry: this.registry,
      autoRegister: this.opts.autoRegister,
      compatibility: this.opts.compatibility,
      logger: this.logger,
    });
  }

  /** Key shards this relay publishes now (0 on a standby). */
  get shards(): number {
    return this.owned.size;
  }

  /** Starts publishing in the background (and the metrics server, if asked for); returns at once. */
  async start(): Promise<void> {
    if (this.loop) return;
    if (this.opts.metrics)
      this.server = await startMetricsServer({
        port: this.opts.metrics.port,
        host: this.opts.metrics.host,
        registry: this.metrics.registry,
        ready: () => this.kafkaUp,
        option: 'metrics.port',
      });
    this.loop = this.run();
  }

  /** The metrics server's port (when `metrics` was given). */
  get metricsPort(): number | undefined {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a.port : undefined;
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.wake();
    await this.loop;
    await Promise.allSettled([this.producer.disconnect(), this.admin.disconnect()]);
    this.registry.close();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }

  private wake(): void {
    this.woken = true;
    this.wakeUp?.();
  }

  private async run(): Promise<void> {
    let failures = 0;
    while (!this.abort.signal.aborted) {
      try {
        await this.session(() => {
          failures = 0;
        });
      } catch (error) {
        if (this.abort.signal.aborted) break;
        const wait = backoffDelay(retryPolicies.outbox, failures++);
        this.fault(error, wait);
        await sleep(systemClock, wait, this.abort.signal);
      }
    }
  }

  /** One line per distinct fault (and a reminder each minute while it lasts): never a stack. */
  private fault(error: unknown, wait: number): void {
    const line = `outbox relay (${this.table.name}): ${describeFault(error, this.opts.databaseUrl)}; retrying in ${(wait / 1000).toFixed(1)}s`;
    const key = line.replace(/retrying in .*$/, '');
    if (key === this.lastFault.line && Date.now() - this.lastFault.at < 60_000) return;
    this.lastFault = { line: key, at: Date.now() };
    this.logger.warn({ table: this.table.name, database: redactUrl(this.opts.databaseUrl) }, line);
  }

  private async connectKafka(): Promise<void> {
    if (this.kafkaUp) return;
    await this.admin.connect();
    await this.producer.connect();
    this.kafkaUp = true;
  }

  private async session(onConnected: () => void): Promise<void> {
    const { Client } = await loadPg();
    await this.connectKafka().catch((error: unknown) => {
      this.kafkaUp = false;
      throw error;
    });
    const client: pg.Client = new Client({
      connectionString: this.opts.databaseUrl,
      connectionTimeoutMillis: 5000,
      keepAlive: true,
      // pg_stat_activity shows which table a relay session serves.
      application_name: `strand-outbox-relay ${this.table.name}`.slice(0, 63),
    });
    let lost: Error | undefined;
    client.on('error', (error) => {
      lost ??= error;
      this.wake();
    });
    client.on('end', () => {
      lost ??= new Error('the PostgreSQL connection ended');
      this.wake();
    });
    client.on('notification', (n) => {
      if (n.payload === this.table.name) this.wake();
    });
    const locks = lockSpaces(this.table).relays;
    this.counts.sessions++;
    try {
      await client.connect();
      await client.query(`LISTEN ${OUTBOX_CHANNEL}`);
      let nextTakeover = 0;
      let nextStats = 0;
      let reported = false;
      while (!this.abort.signal.aborted) {
        if (lost) throw lost;
        const now = Date.now();
        if (now >= nextTakeover && this.owned.size < OUTBOX_SHARDS) {
          const free = ALL_SHARDS.filter((s) => !this.owned.has(s));
          const { rows } = await client.query<{ s: number }>(
            'SELECT s FROM unnest($2::int[]) AS s WHERE pg_try_advisory_lock($1, s)',
            [locks, free],
          );
          for (const { s } of rows) this.owned.add(s);
          if (rows.length > 0)
            this.logger.info(
              { table: this.table.name, shards: this.owned.size },
              `outbox relay (${this.table.name}): publishing ${this.owned.size} of ${OUTBOX_SHARDS} key shards`,
            );
          this.metrics.shards.set({ table: this.table.name }, this.owned.size);
          nextTakeover = now + this.opts.takeoverIntervalMs;
        }
        if (!reported) {
          onConnected();
          reported = true;
          this.lastFault = { line: '', at: 0 };
        }
        if (now >= nextStats) {
          await this.readStats(client);
          nextStats = now + this.opts.statsIntervalMs;
        }
        this.woken = false;
        const more = this.owned.size > 0 ? await this.drain(client) : false;
        if (more || this.woken) continue;
        const waitMs = Math.min(
          this.opts.pollIntervalMs,
          this.owned.size < OUTBOX_SHARDS ? Math.max(0, nextTakeover - Date.now()) : Number.POSITIVE_INFINITY,
        );
        await new Promise<void>((resolve) => {
          this.wakeUp = resolve;
          if (this.woken) resolve();
          void sleep(systemClock, waitMs, this.abort.signal).then(resolve);
        });
        this.wakeUp = undefined;
      }
    } finally {
      // Closing the session releases its advisory locks: a standby may take the shards now.
      this.owned.clear();
      this.metrics.shards.set({ table: this.table.name }, 0);
      await client.end().catch(() => undefined);
    }
  }

  /** Publishes one batch of the owned shards' rows, oldest first; true when there may be more. */
  private async drain(client: pg.Client): Promise<boolean> {
    // Oldest id first along the primary key, stopping at batchSize: no index on (shard, id), which
    // made the planner fetch every row of the shards and sort them for each batch (a backlog of
    // 20,000 rows drained at half the speed of a plain loop). A relay holding every shard reads
    // without the filter. id and run_at are bigint, which pg hands over as strings (not id::text:
    // ORDER BY id would then sort by the text, putting row 12 before row 3).
    const all = this.owned.size === OUTBOX_SHARDS;
    const { rows } = await client.query<OutboxRow>(
      `SELECT id, topic, key, job_id, schema, body, headers, run_at,
         (extract(epoch FROM enqueued_at) * 1000)::bigint AS enqueued_ms
       FROM ${this.table.sql} ${all ? '' : 'WHERE shard = ANY($2::smallint[])'} ORDER BY id LIMIT $1`,
      all ? [this.opts.batchSize] : [this.opts.batchSize, [...this.owned]],
    );
    if (rows.length === 0) return false;
    const outcome = await this.publisher.publish(rows);
    await client.query(`DELETE FROM ${this.table.sql} WHERE id = ANY($1::bigint[])`, [rows.map((r) => r.id)]);
    const ackedAt = Date.now();
    const table = this.table.name;
    for (const [topic, n] of outcome.published) {
      this.topicsSeen.add(topic);
      this.metrics.published.inc({ table, topic }, n);
      this.counts.published += n;
    }
    for (const [topic, n] of outcome.deadLettered) {
      this.topicsSeen.add(topic);
      this.metrics.deadLettered.inc({ table, topic }, n);
      this.counts.deadLettered += n;
    }
    for (const t of outcome.enqueuedAt) this.metrics.publishLatency.observe({ table }, (ackedAt - t) / 1000);
    return rows.length === this.opts.batchSize;
  }

  private async readStats(client: pg.Client): Promise<void> {
    const backlog = await outboxBacklog(client, this.table.name);
    this.metrics.pending.reset();
    this.metrics.oldestAge.reset();
    for (const b of backlog) this.topicsSeen.add(b.topic);
    for (const topic of this.topicsSeen) {
      const b = backlog.find((x) => x.topic === topic) ?? { topic, pending: 0, oldestAgeSeconds: 0 };
      const labels = { table: this.table.name, topic: b.topic };
      this.metrics.pending.set(labels, b.pending);
      this.metrics.oldestAge.set(labels, b.oldestAgeSeconds);
    }
  }
}
