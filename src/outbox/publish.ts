import type { SchemaRejectedError } from '../codec/errors.js';
import { type Compatibility, encodeWire, type SchemaRegistryGateway } from '../codec/index.js';
import { isStrandError, StrandError } from '../errors.js';
import { HEADERS } from '../headers.js';
import type { Admin, Message, Producer } from '../kafka/client.js';
import { createKeyPartitioner } from '../kafka/partitioner.js';
import { type PartitionCounts, partitionCounts, sendAcknowledged } from '../kafka/send.js';
import type { Logger } from '../observability/logger.js';
import { chooseBucket, type DelayBucket, findDelayBuckets } from '../topology/delays.js';
import { topicNames } from '../topology/topics.js';

/** The header naming the outbox row a record was published from. */
export const OUTBOX_ID_HEADER = 'strand-outbox-id';

/** One outbox row as the relay reads it. */
export interface OutboxRow {
  id: string;
  topic: string;
  key: string | null;
  job_id: string;
  schema: string;
  body: Buffer;
  headers: Record<string, string>;
  run_at: string | null;
  /** enqueued_at in epoch ms. */
  enqueued_ms: string;
}

/** What a publish did, per job topic. */
export interface PublishOutcome {
  published: Map<string, number>;
  deadLettered: Map<string, number>;
  /** enqueued_ms of each published row (for the latency histogram). */
  enqueuedAt: number[];
}

/**
 * Turns outbox rows into Kafka records and sends them (acks=all, every partition acknowledged):
 * the registry id of the row's schema under `<topic>-value`, the Confluent wire format around the
 * row's Avro body, the job id, enqueued-at and `strand-outbox-id` headers. A row whose schema the
 * registry rejects (its compatibility rule) goes to `<topic>.dlq` with the reason instead; any
 * other failure (registry or Kafka unreachable, a missing topic) throws, and the caller tries
 * the batch again later. Records of one topic keep the rows' order.
 */
export class OutboxPublisher {
  private readonly partitionFor = createKeyPartitioner();
  private readonly counts: PartitionCounts;
  private delayPlans = new Map<string, { at: number; buckets: DelayBucket[] }>();

  constructor(
    private readonly deps: {
      producer: Producer;
      admin: Admin;
      registry: SchemaRegistryGateway;
      autoRegister: boolean;
      compatibility: Compatibility;
      logger: Logger;
    },
  ) {
    this.counts = partitionCounts(deps.admin);
  }

  async publish(rows: readonly OutboxRow[]): Promise<PublishOutcome> {
    const ids = new Map<string, number | SchemaRejectedError>();
    for (const row of rows) {
      const k = `${row.topic}\u0000${row.schema}`;
      if (ids.has(k)) continue;
      try {
        ids.set(
          k,
          await this.deps.registry.schemaId(`${row.topic}-value`, JSON.parse(row.schema) as object, {
            autoRegister: this.deps.autoRegister,
            compatibility: this.deps.compatibility,
          }),
        );
      } catch (error) {
        if (!isStrandError(error, 'SCHEMA_REJECTED')) throw error;
        ids.set(k, error as SchemaRejectedError);
      }
    }
    const now = Date.now();
    const byTopic = new Map<string, Message[]>();
    const outcome: PublishOutcome = { published: new Map(), deadLettered: new Map(), enqueuedAt: [] };
    const add = async (topic: string, key: string | null, value: Buffer, headers: Record<string, string>) => {
      const partition = this.partitionFor(topic, key, await this.counts(topic));
      const list = byTopic.get(topic) ?? [];
      list.push({ key, value, headers, partition });
      byTopic.set(topic, list);
    };
    for (const row of rows) {
      const headers: Record<string, string> = {
        ...row.headers,
        [HEADERS.jobId]: row.job_id,
        [HEADERS.enqueuedAt]: row.enqueued_ms,
        [OUTBOX_ID_HEADER]: row.id,
      };
      const id = ids.get(`${row.topic}\u0000${row.schema}`)!;
      let rejected: Error | undefined = typeof id === 'number' ? undefined : id;
      let topic = row.topic;
      const dueAt = row.run_at === null ? undefined : Number(row.run_at);
      if (!rejected && dueAt !== undefined && dueAt > now) {
        const buckets = await this.delayBuckets(row.topic);
        if (buckets.length === 0) {
          rejected = new StrandError(
            'KAFKA',
            `topic ${row.topic} has no delay buckets for a delayed job; create them with "strand topics create ${row.topic} --delays"`,
          );
        } else {
          const next = chooseBucket(buckets, dueAt - now);
          const bucket = next.kind === 'bucket' ? next.bucket : buckets[0]!;
          topic = bucket.topic;
          headers[HEADERS.dueAt] = String(dueAt);
          headers[HEADERS.holdUntil] = String(now + bucket.ms);
        }
      }
      if (rejected) {
        // No schema id exists for these bytes: the DLQ keeps the row's Avro body as it was written.
        await add(topicNames(row.topic, 0).dlq, row.key, row.body, {
          ...headers,
          [HEADERS.attempt]: '1',
          [HEADERS.errorClass]: rejected.name,
          [HEADERS.errorMessage]: rejected.message.slice(0, 4096),
          [HEADERS.failedAt]: String(now),
          [HEADERS.deadReason]: 'outbox-rejected',
          [HEADERS.originTopic]: row.topic,
        });
        outcome.deadLettered.set(row.topic, (outcome.deadLettered.get(row.topic) ?? 0) + 1);
        this.deps.logger.warn(
          { outboxId: row.id, jobId: row.job_id, topic: row.topic },
          `outbox row ${row.id} (job ${row.job_id}) sent to ${topicNames(row.topic, 0).dlq}: ${rejected.message}`,
        );
        continue;
      }
      await add(topic, row.key, encodeWire(id as number, row.body), headers);
      outcome.published.set(row.topic, (outcome.published.get(row.topic) ?? 0) + 1);
      outcome.enqueuedAt.push(Number(row.enqueued_ms));
    }
    if (byTopic.size > 0)
      await sendAcknowledged(
        this.deps.producer,
        [...byTopic].map(([topic, messages]) => ({ topic, messages })),
        {
          onResend: (partitions) =>
            this.deps.logger.warn(
              { partitions },
              'partitions missing from the produce answer; sending them again',
            ),
        },
      );
    return outcome;
  }

  /** The topic's delay buckets, looked up once a minute. */
  private async delayBuckets(topic: string): Promise<DelayBucket[]> {
    const hit = this.delayPlans.get(topic);
    if (hit && Date.now() - hit.at < 60_000) return hit.buckets;
    const buckets = findDelayBuckets(topic, await this.deps.admin.listTopics());
    this.delayPlans.set(topic, { at: Date.now(), buckets });
    return buckets;
  }
}
