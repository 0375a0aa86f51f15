import { SpanKind } from '@opentelemetry/api';
import { v7 as uuidv7 } from 'uuid';
import { z } from 'zod';
import {
  AvroCodec,
  type AvroType,
  assertValid,
  type Compatibility,
  parseAvroSchema,
  type RegistryOptions,
  SchemaRegistryGateway,
} from '../codec/index.js';
import {
  avroSchemaObject,
  ConfigError,
  compatibilitySchema,
  connectionSchema,
  parseDuration,
  parseOptions,
  registrySchema,
} from '../config/index.js';
import { StrandError } from '../errors.js';
import { HEADERS } from '../headers.js';
import {
  type Admin,
  createKafka,
  explainConnectError,
  type KafkaConnection,
  Partitioners,
  type Producer,
} from '../kafka/client.js';
import { createKeyPartitioner } from '../kafka/partitioner.js';
import { sendAcknowledged } from '../kafka/send.js';
import { topicRetentionMs } from '../kafka/topics.js';
import { createLogger, kafkaLogSink, type Logger } from '../observability/logger.js';
import {
  ATTR,
  activeContext,
  activeTracer,
  recordContext,
  startSpan,
  type TracedSpan,
  type Tracer,
  withContext,
} from '../observability/tracing.js';
import type { OutgoingRecord, TopicRecords } from '../ports.js';
import { chooseBucket, type DelayBucket, delayLabel, findDelayBuckets } from '../topology/delays.js';

/** Options of a {@link JobProducer}. */
export interface JobProducerOptions {
  /** Bootstrap brokers (`host:port`). Shorthand for `kafka.brokers`. */
  brokers?: string[];
  /** Full connection settings (TLS, SASL, timeouts). */
  kafka?: KafkaConnection;
  /** Schema registry (Confluent API). */
  registry: RegistryOptions;
  /** The job topic. */
  topic: string;
  /** The job's Avro schema (parsed `.avsc` JSON). */
  schema: object;
  /** Registry subject. @defaultValue `<topic>-value` (TopicNameStrategy) */
  subject?: string;
  /** Register the schema on first use; `false` only looks it up (production setups). @defaultValue true */
  autoRegister?: boolean;
  /** Compatibility rule set on a new subject. @defaultValue `'BACKWARD'` */
  compatibility?: Compatibility;
  /** pino logger. @defaultValue a logger at `STRAND_LOG_LEVEL` */
  logger?: Logger;
  /**
   * A PRODUCER span per job (`send <topic>`) whose context goes into the record's `traceparent` /
   * `tracestate`, through the global tracer provider and propagator (a no-op until the application
   * registers an OpenTelemetry SDK). `false` turns it off. @defaultValue true
   */
  tracing?: boolean;
}

/** One job to enqueue. */
export interface JobInput<T = Record<string, unknown>> {
  /** Ordering key: jobs with the same key run one at a time, in order. `null` = no ordering. */
  key: string | null;
  /** Job payload; must match the schema. */
  data: T;
  /** Idempotency key; a UUIDv7 is generated when absent. */
  jobId?: string;
  /**
   * W3C trace context to continue. Without tracing it is written as the `traceparent` header as
   * given; with an SDK registered it is the parent of the job's send span (instead of the active
   * span), whose context is written.
   */
  traceparent?: string;
  /** Extra headers (strings). */
  headers?: Record<string, string>;
  /**
   * Run no earlier than this long from now: milliseconds or a duration string (`'10m'`). Zero or
   * negative: now. The topic needs delay buckets (`strand topics create <topic> --delays`).
   */
  delay?: number | string;
  /** Run no earlier than this time (a Date or epoch milliseconds); a past time runs now. */
  runAt?: Date | number;
}

/** Where an enqueued job landed. */
export interface EnqueueResult {
  jobId: string;
  partition: number;
  /** Kafka offset (a decimal string, as Kafka offsets exceed 2^53 in principle). */
  offset: string;
  /** The topic written: the job topic, or a delay bucket of it for a delayed job. */
  topic: string;
  /** When a delayed job becomes due (epoch ms); absent for a job that runs now. */
  dueAt?: number;
}

const optionsSchema = z
  .object({
    brokers: connectionSchema.shape.brokers.optional(),
    kafka: connectionSchema.optional(),
    registry: registrySchema,
    topic: z
      .string()
      .min(1)
      .max(249)
      .regex(/^[a-zA-Z0-9._-]+$/, 'expected a Kafka topic name'),
    schema: avroSchemaObject,
    subject: z.string().min(1).optional(),
    autoRegister: z.boolean().default(true),
    compatibility: compatibilitySchema,
    logger: z.custom<Logger>().optional(),
    tracing: z.boolean().default(true),
  })
  .strict()
  .refine((o) => o.brokers !== undefined || o.kafka !== undefined, {
    message: 'expected brokers or kafka.brokers',
    path: ['brokers'],
  });

/**
 * Schema-governed producer of jobs: validates every job against its Avro schema before anything
 * is sent, writes the Confluent wire format, and uses an idempotent producer with acks=all.
 */
export class JobProducer<T = Record<string, unknown>> {
  readonly topic: string;
  readonly subject: string;
  private readonly opts: z.output<typeof optionsSchema>;
  private readonly type: AvroType;
  private readonly registry: SchemaRegistryGateway;
  private readonly codec: AvroCodec;
  private readonly producer: Producer;
  private readonly admin: Admin;
  private readonly logger: Logger;
  private readonly connection: KafkaConnection;
  private readonly partitionFor = createKeyPartitioner();
  private partitions = 0;
  private connected = false;
  /** Delay buckets of the topic and their partition counts, looked up on the first delayed job. */
  private delayPlan:
    | Promise<{ buckets: DelayBucket[]; partitions: Map<string, number>; retentionMs?: number }>
    | undefined;
  private delayPlanAt = 0;

  constructor(options: JobProducerOptions) {
    this.opts = parseOptions(optionsSchema, options, 'producer');
    try {
      this.type = parseAvroSchema(this.opts.schema);
    } catch (error) {
      throw new ConfigError('schema', `not a valid Avro schema: ${(error as Error).message}`);
    }
    this.topic = this.opts.topic;
    this.subject = this.opts.subject ?? `${this.topic}-value`;
    this.logger = this.opts.logger ?? createLogger({ name: 'strand-producer' });
    const conn: KafkaConnection = { ...(this.opts.kafka ?? { brokers: [] }) } as KafkaConnection;
    if (this.opts.brokers) conn.brokers = this.opts.brokers;
    this.connection = conn;
    const kafka = createKafka(conn, kafkaLogSink(this.logger));
    // Unlimited retries keep the idempotent producer's no-duplicate, in-order guarantee (kafkajs warns otherwise).
    this.producer = kafka.producer({
      // Every record gets an explicit partition (sendAcknowledged); this only silences kafkajs' v2 notice.
      createPartitioner: Partitioners.DefaultPartitioner,
      idempotent: true,
      maxInFlightRequests: 5,
      allowAutoTopicCreation: false,
      retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 100, maxRetryTime: 5000 },
    });
    this.admin = kafka.admin();
    this.registry = new SchemaRegistryGateway(this.opts.registry as never);
    this.codec = new AvroCodec(this.registry);
  }

  /**
   * Connects and checks that the topic exists (a clear error if it does not). A failed connect
   * closes what it opened, so a program that gives up on it can exit.
   */
  async connect(): Promise<void> {
    try {
      // The admin first: a refused login (bad credentials) then fails once, before the producer,
      // whose unlimited retries are meant for broker outages, tries at all.
      try {
        await this.admin.connect();
        await this.producer.connect();
      } catch (error) {
        throw explainConnectError(error, this.connection);
      }
      await this.refreshPartitions();
    } catch (error) {
      await this.disconnect().catch(() => undefined);
      throw error;
    }
    this.connected = true;
  }

  private async refreshPartitions(): Promise<void> {
    try {
      const meta = await this.admin.fetchTopicMetadata({ topics: [this.topic] });
      this.partitions = meta.topics[0]?.partitions.length ?? 0;
    } catch (error) {
      const message = (error as Error).message;
      if (/does not host this topic-partition|UNKNOWN_TOPIC|not exist/i.test(message)) {
        // No cause: kafkajs' "does not host this topic-partition" would only repeat it, less clearly.
        throw new StrandError(
          'KAFKA',
          `topic ${this.topic} does not exist (create it with "strand topics create ${this.topic}")`,
        );
      }
      throw error;
    }
    if (this.partitions === 0) throw new StrandError('KAFKA', `topic ${this.topic} has no partitions`);
  }

  /** The registry id of this producer's schema (registered or looked up on first use, then cached). */
  schemaId(): Promise<number> {
    return this.registry.schemaId(this.subject, this.opts.schema, {
      autoRegister: this.opts.autoRegister,
      compatibility: this.opts.compatibility,
    });
  }

  async enqueue(job: JobInput<T>): Promise<EnqueueResult> {
    const [result] = await this.enqueueMany([job]);
    return result!;
  }

  /**
   * Enqueues jobs in one request. Every job is validated first: one invalid job rejects the whole
   * call and nothing is sent. Jobs of one key keep their order.
   */
  async enqueueMany(jobs: readonly JobInput<T>[]): Promise<EnqueueResult[]> {
    const planned = await this.plan(jobs);
    if (planned.length === 0) return [];
    // One produce request; records of one key and topic keep their order.
    const byTopic = new Map<string, typeof planned>();
    for (const p of planned) byTopic.set(p.topic, [...(byTopic.get(p.topic) ?? []), p]);
    const ordered = [...byTopic.values()].flat();
    const send = () =>
      sendAcknowledged(
        this.producer,
        [...byTopic].map(([topic, list]) => ({ topic, messages: list.map((p) => p.message) })),
        {
          onResend: (partitions) =>
            this.logger.warn(
              { partitions },
              'partitions missing from the produce answer; sending them again',
            ),
        },
      );
    let placed: Awaited<ReturnType<typeof send>>;
    try {
      // One job: its span is active while kafkajs sends (client instrumentation nests under it).
      const only = planned.length === 1 ? planned[0]!.span : undefined;
      placed = await (only ? withContext(only.context, send) : send());
    } catch (error) {
      for (const { span } of planned) {
        span?.fail(error);
        span?.end();
      }
      throw error;
    }
    const at = new Map(ordered.map((p, i) => [p, placed[i]!]));
    for (const p of planned) p.span?.end(undefined, { [ATTR.offset]: Number(at.get(p)!.offset) });
    return planned.map((p) => {
      const where = at.get(p)!;
      const result: EnqueueResult = {
        jobId: p.jobId,
        partition: where.partition,
        offset: where.offset,
        topic: where.topic,
      };
      if (p.dueAt !== undefined) result.dueAt = p.dueAt;
      return result;
    });
  }

  /**
   * Validates and encodes jobs into records without sending them: an exactly-once worker's
   * `ctx.enqueue` hands them to its round (one Kafka transaction with the input offset's commit).
   */
  async prepare(jobs: readonly JobInput<T>[]): Promise<{ jobIds: string[]; records: TopicRecords[] }> {
    const planned = await this.plan(jobs);
    const byTopic = new Map<string, TopicRecords & { messages: OutgoingRecord[] }>();
    for (const p of planned) {
      p.span?.end();
      const list = byTopic.get(p.topic);
      if (list) list.messages.push(p.message);
      else byTopic.set(p.topic, { topic: p.topic, messages: [p.message] });
    }
    return { jobIds: planned.map((p) => p.jobId), records: [...byTopic.values()] };
  }

  /** Every job validated, its record encoded, its topic (delay bucket) and partition chosen. */
  private async plan(jobs: readonly JobInput<T>[]) {
    if (!this.connected) throw new StrandError('KAFKA', 'producer is not connected (call connect() first)');
    jobs.forEach((job, i) => {
      if (job.key !== null && typeof job.key !== 'string') {
        throw new ConfigError(`jobs[${i}].key`, 'expected a string or null');
      }
      assertValid(this.type, job.data, jobs.length > 1 ? `jobs[${i}].data` : 'job data');
    });
    if (jobs.length === 0) return [];
    const nowMs = Date.now();
    const dueAts = jobs.map((job, i) => dueAtOf(job, nowMs, jobs.length > 1 ? `jobs[${i}]` : 'job'));
    const plan = dueAts.some((d) => d !== undefined) ? await this.delays() : undefined;
    const schemaId = await this.schemaId();
    const now = String(nowMs);
    const tracer = this.opts.tracing ? activeTracer() : undefined;
    return jobs.map((job, i) => {
      const jobId = job.jobId ?? uuidv7();
      const headers: Record<string, string> = {
        ...job.headers,
        [HEADERS.jobId]: jobId,
        [HEADERS.enqueuedAt]: now,
      };
      let topic = this.topic;
      let partitions = this.partitions;
      const dueAt = dueAts[i];
      if (dueAt !== undefined && plan) {
        const where = jobs.length > 1 ? `jobs[${i}]` : 'job';
        if (plan.retentionMs !== undefined && dueAt - nowMs > plan.retentionMs)
          throw new ConfigError(
            `${where}.${job.runAt !== undefined ? 'runAt' : 'delay'}`,
            `due in ${delayLabel(dueAt - nowMs)}, beyond the retention of topic ${this.topic} (${delayLabel(plan.retentionMs)})`,
          );
        const next = chooseBucket(plan.buckets, dueAt - nowMs);
        const bucket = next.kind === 'bucket' ? next.bucket : plan.buckets[0]!;
        topic = bucket.topic;
        partitions = plan.partitions.get(topic) ?? this.partitions;
        headers[HEADERS.dueAt] = String(dueAt);
        headers[HEADERS.holdUntil] = String(nowMs + bucket.ms);
      }
      const partition = this.partitionFor(topic, job.key, partitions);
      const span = tracer ? this.sendSpan(tracer, job, jobId, topic, partition, headers) : undefined;
      if (!tracer && job.traceparent) headers[HEADERS.traceparent] = job.traceparent;
      return {
        jobId,
        topic,
        dueAt,
        span,
        message: {
          key: job.key,
          value: this.codec.encode(schemaId, this.type, job.data),
          headers,
          partition,
        },
      };
    });
  }

  /** The topic's delay buckets (cached for a minute); a one-line error when it has none. */
  private delays(): Promise<{
    buckets: DelayBucket[];
    partitions: Map<string, number>;
    retentionMs?: number;
  }> {
    if (this.delayPlan && Date.now() - this.delayPlanAt < 60_000) return this.delayPlan;
    this.delayPlanAt = Date.now();
    const plan = (async () => {
      const buckets = findDelayBuckets(this.topic, await this.admin.listTopics());
      if (buckets.length === 0)
        throw new StrandError(
          'KAFKA',
          `topic ${this.topic} has no delay buckets for delayed jobs; create them with "strand topics create ${this.topic} --delays"`,
        );
      const meta = await this.admin.fetchTopicMetadata({ topics: buckets.map((b) => b.topic) });
      const partitions = new Map(meta.topics.map((t) => [t.name, t.partitions.length]));
      const retentionMs = await topicRetentionMs(this.admin, this.topic);
      return retentionMs === undefined ? { buckets, partitions } : { buckets, partitions, retentionMs };
    })();
    this.delayPlan = plan;
    plan.catch(() => {
      if (this.delayPlan === plan) this.delayPlan = undefined;
    });
    return plan;
  }

  /** The job's PRODUCER span, its context written into the record's headers. */
  private sendSpan(
    tracer: Tracer,
    job: JobInput<T>,
    jobId: string,
    topic: string,
    partition: number,
    headers: Record<string, string>,
  ): TracedSpan {
    // A delayed job's record goes to a delay bucket: the span names the job topic, the bucket too.
    const span = startSpan(tracer, `send ${this.topic}`, {
      kind: SpanKind.PRODUCER,
      parent: job.traceparent ? recordContext({ [HEADERS.traceparent]: job.traceparent }) : activeContext(),
      attributes: {
        [ATTR.system]: 'kafka',
        [ATTR.destination]: this.topic,
        ...(topic !== this.topic ? { 'strand.delay_bucket': topic } : {}),
        [ATTR.partition]: partition,
        [ATTR.partitionId]: String(partition),
        ...(job.key !== null ? { [ATTR.key]: job.key } : {}),
        [ATTR.messageId]: jobId,
        [ATTR.operationType]: 'send',
        [ATTR.operationName]: 'send',
      },
    });
    span.inject(headers);
    return span;
  }

  async disconnect(): Promise<void> {
    this.connected = false;
    await Promise.all([this.producer.disconnect(), this.admin.disconnect()]);
    this.registry.close();
  }
}

/** When a job with `delay` or `runAt` becomes due (undefined: it runs now). */
export function dueAtOf(
  job: Pick<JobInput<unknown>, 'delay' | 'runAt'>,
  now: number,
  where: string,
): number | undefined {
  if (job.delay !== undefined && job.runAt !== undefined)
    throw new ConfigError(`${where}.delay`, 'give delay or runAt, not both');
  let dueAt: number | undefined;
  if (job.delay !== undefined) {
    if (typeof job.delay === 'string' && /^\s*-/.test(job.delay)) return undefined;
    const ms = typeof job.delay === 'number' ? job.delay : parseDuration(job.delay, `${where}.delay`);
    if (!Number.isFinite(ms))
      throw new ConfigError(`${where}.delay`, `expected milliseconds or a duration like "10m"`);
    dueAt = now + ms;
  } else if (job.runAt !== undefined) {
    const t = job.runAt instanceof Date ? job.runAt.getTime() : job.runAt;
    if (typeof t !== 'number' || !Number.isFinite(t))
      throw new ConfigError(`${where}.runAt`, 'expected a Date or epoch milliseconds');
    dueAt = t;
  }
  return dueAt !== undefined && dueAt > now ? Math.ceil(dueAt) : undefined;
}
