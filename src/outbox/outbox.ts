import { v7 as uuidv7 } from 'uuid';
import { z } from 'zod';
import { type AvroType, assertValid, parseAvroSchema } from '../codec/index.js';
import { avroSchemaObject, ConfigError, parseOptions } from '../config/index.js';
import { dueAtOf, type JobInput } from '../producer/job-producer.js';
import { keyHash, lockSpaces, type OutboxTable, outboxTable, type Queryable, shardOf } from './table.js';

/** Options of an {@link Outbox}. */
export interface OutboxOptions {
  /** The job topic (with `schema`); or name several with `topics`. */
  topic?: string;
  /** The job's Avro schema (parsed `.avsc` JSON), for `topic`. */
  schema?: object;
  /** Several job topics and their schemas; each job then names its `topic`. */
  topics?: Record<string, object>;
  /** The outbox table (`name` or `schema.name`), as given to `strand outbox migrate`. @defaultValue `'strand_outbox'` */
  table?: string;
}

/** One job to write into the outbox. */
export interface OutboxJob<T = Record<string, unknown>>
  extends Pick<JobInput<T>, 'key' | 'data' | 'jobId' | 'headers' | 'delay' | 'runAt'> {
  /** Which of the outbox's topics; needed only when it has several. */
  topic?: string;
}

/** A job written into the outbox (not yet in Kafka: the relay publishes it once the transaction commits). */
export interface OutboxEntry {
  jobId: string;
  /** The outbox row's id (the `strand-outbox-id` header of the published record). */
  outboxId: string;
  topic: string;
  /** When a delayed job becomes due (epoch ms); absent for a job that runs now. */
  dueAt?: number;
}

const topicName = z
  .string()
  .min(1)
  .max(249)
  .regex(/^[a-zA-Z0-9._-]+$/, 'expected a Kafka topic name');

const optionsSchema = z
  .object({
    topic: topicName.optional(),
    schema: avroSchemaObject.optional(),
    topics: z.record(topicName, avroSchemaObject).optional(),
    table: z.string().optional(),
  })
  .strict()
  .refine((o) => (o.topic !== undefined) === (o.schema !== undefined), {
    message: 'give topic and schema together',
    path: ['schema'],
  })
  .refine((o) => o.topic !== undefined || (o.topics && Object.keys(o.topics).length > 0), {
    message: 'expected topic and schema, or topics',
    path: ['topic'],
  });

interface TopicPlan {
  type: AvroType;
  /** The schema as the relay registers it (JSON text, stored in each row). */
  schemaText: string;
}

/**
 * Jobs written in the caller's own PostgreSQL transaction: `enqueue(client, job)` inserts a row
 * on the client the caller began the transaction on, so the job exists exactly when the
 * transaction commits. The data is checked against the Avro schema here (a `ValidationError`
 * naming the field, thrown inside the caller's transaction); nothing here talks to Kafka or the
 * schema registry, so their outages never block a business transaction. `OutboxRelay` publishes
 * committed rows. Jobs of one key reach Kafka in the order their transactions committed: writing
 * one takes a transaction-scoped lock on the key (docs/architecture.md, "Transactional outbox").
 */
export class Outbox<T = Record<string, unknown>> {
  readonly table: OutboxTable;
  private readonly plans = new Map<string, TopicPlan>();
  private readonly defaultTopic: string | undefined;
  private readonly sql: string;

  constructor(options: OutboxOptions) {
    const opts = parseOptions(optionsSchema, options, 'outbox');
    this.table = outboxTable(opts.table);
    const schemas: Record<string, object> = { ...opts.topics };
    if (opts.topic && opts.schema) schemas[opts.topic] = opts.schema;
    for (const [topic, schema] of Object.entries(schemas)) {
      let type: AvroType;
      try {
        type = parseAvroSchema(schema);
      } catch (error) {
        const where = opts.topics?.[topic] === schema ? `topics.${topic}` : 'schema';
        throw new ConfigError(where, `not a valid Avro schema: ${(error as Error).message}`);
      }
      this.plans.set(topic, { type, schemaText: JSON.stringify(schema) });
    }
    this.defaultTopic = this.plans.size === 1 ? [...this.plans.keys()][0] : undefined;
    // One statement: the key locks are an InitPlan, taken before any row (and its id) is made, and
    // held to the end of the transaction (also an autocommit statement's own).
    this.sql = `INSERT INTO ${this.table.sql} (topic, key, shard, job_id, schema, body, headers, run_at)
      SELECT r.topic, r.key, r.shard, r.job_id, r.schema, r.body, r.headers::jsonb, r.run_at
      FROM unnest($2::text[], $3::text[], $4::smallint[], $5::text[], $6::text[], $7::bytea[], $8::text[], $9::bigint[])
        AS r(topic, key, shard, job_id, schema, body, headers, run_at)
      WHERE (SELECT count(pg_advisory_xact_lock($1, h)) FROM unnest($10::int[]) AS h) >= 0
      RETURNING id`;
  }

  /** Writes one job in the caller's transaction (see {@link Outbox.enqueueMany}). */
  async enqueue(client: Queryable, job: OutboxJob<T>): Promise<OutboxEntry> {
    const [entry] = await this.enqueueMany(client, [job]);
    return entry!;
  }

  /**
   * Writes jobs in the caller's transaction, in one statement: every job is validated first (one
   * invalid job throws and writes nothing). `client` is the `pg` client or pool client the caller
   * ran `BEGIN` on. Jobs of one key are published in the order written here, after the jobs of
   * that key from transactions that committed earlier.
   */
  async enqueueMany(client: Queryable, jobs: readonly OutboxJob<T>[]): Promise<OutboxEntry[]> {
    if (!client || typeof client.query !== 'function')
      throw new ConfigError('client', 'expected a pg client or pool client (with a query method)');
    if (jobs.length === 0) return [];
    const now = Date.now();
    const cols = {
      topic: [] as string[],
      key: [] as (string | null)[],
      shard: [] as number[],
      jobId: [] as string[],
      schema: [] as string[],
      body: [] as Buffer[],
      headers: [] as string[],
      runAt: [] as (string | null)[],
    };
    const entries: OutboxEntry[] = [];
    jobs.forEach((job, i) => {
      const where = jobs.length > 1 ? `jobs[${i}]` : 'job';
      const topic = job.topic ?? this.defaultTopic;
      const plan = topic === undefined ? undefined : this.plans.get(topic);
      if (!plan || topic === undefined)
        throw new ConfigError(
          `${where}.topic`,
          topic === undefined
            ? `this outbox has several topics (${[...this.plans.keys()].join(', ')}); name one`
            : `not a topic of this outbox (${[...this.plans.keys()].join(', ')})`,
        );
      if (job.key !== null && typeof job.key !== 'string')
        throw new ConfigError(`${where}.key`, 'expected a string or null');
      if (job.jobId !== undefined && (typeof job.jobId !== 'string' || job.jobId === ''))
        throw new ConfigError(`${where}.jobId`, 'expected a non-empty string');
      for (const [name, value] of Object.entries(job.headers ?? {}))
        if (typeof value !== 'string') throw new ConfigError(`${where}.headers.${name}`, 'expected a string');
      assertValid(plan.type, job.data, jobs.length > 1 ? `jobs[${i}].data` : 'job data');
      const dueAt = dueAtOf(job, now, where);
      const jobId = job.jobId ?? uuidv7();
      cols.topic.push(topic);
      cols.key.push(job.key);
      cols.shard.push(shardOf(job.key, jobId));
      cols.jobId.push(jobId);
      cols.schema.push(plan.schemaText);
      cols.body.push(plan.type.toBuffer(job.data));
      cols.headers.push(JSON.stringify(job.headers ?? {}));
      cols.runAt.push(dueAt === undefined ? null : String(dueAt));
      entries.push(
        dueAt === undefined ? { jobId, outboxId: '', topic } : { jobId, outboxId: '', topic, dueAt },
      );
    });
    // Sorted, so two transactions locking the same keys take them in the same order (no deadlock).
    const locks = [...new Set(cols.key.filter((k): k is string => k !== null).map((k) => keyHash(k)))].sort(
      (a, b) => a - b,
    );
    const { rows } = await client.query(this.sql, [
      lockSpaces(this.table).writers,
      cols.topic,
      cols.key,
      cols.shard,
      cols.jobId,
      cols.schema,
      cols.body,
      cols.headers,
      cols.runAt,
      locks,
    ]);
    (rows as { id: string | number }[]).forEach((row, i) => {
      if (entries[i]) entries[i].outboxId = String(row.id);
    });
    return entries;
  }
}
