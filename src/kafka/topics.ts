import type { ConfigResourceTypes, ITopicConfig } from 'kafkajs';
import { StrandError } from '../errors.js';
import { delayBucketsFor, delayTopicPrefix, parseDelayLabel } from '../topology/delays.js';
import { topicNames } from '../topology/topics.js';
import { type Admin, createKafka, type KafkaConnection } from './client.js';

/**
 * Creates topics and waits until every partition has a leader that the brokers report.
 *
 * kafkajs' own `waitForLeaders` gives up on the first `UNKNOWN_TOPIC_OR_PARTITION`, which a KRaft
 * broker answers for a moment after the controller committed the topic (its metadata cache lags
 * the controller's log). This polls instead and treats that answer as "not yet".
 * Topics that already exist are left as they are.
 */
export async function createTopicsReady(
  admin: Admin,
  topics: ITopicConfig[],
  timeoutMs = 30_000,
): Promise<void> {
  if (topics.length === 0) return;
  await admin.createTopics({ topics, waitForLeaders: false });
  const names = topics.map((t) => t.topic);
  const deadline = Date.now() + timeoutMs;
  let last = 'no metadata yet';
  for (;;) {
    try {
      const meta = await admin.fetchTopicMetadata({ topics: names });
      const waiting = meta.topics.flatMap((t) =>
        t.partitions.filter((p) => p.leader < 0).map((p) => `${t.name}[${p.partitionId}]`),
      );
      const missing = names.filter((n) => !meta.topics.some((t) => t.name === n && t.partitions.length > 0));
      if (waiting.length === 0 && missing.length === 0) return;
      last = `no leader yet for ${[...missing, ...waiting].slice(0, 5).join(', ')}`;
    } catch (error) {
      last = (error as Error).message;
    }
    if (Date.now() > deadline) {
      throw new Error(`topics ${names.join(', ')} not ready after ${timeoutMs} ms: ${last}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

export interface JobTopicsSpec {
  topic: string;
  partitions: number;
  replication?: number;
  /** Retry tier delays in ms (one topic each). */
  tierDelays: number[];
  dlqTopic?: string;
  /** Delay bucket lengths in ms for delayed jobs (the 0 s bucket is added); absent: no delay buckets. */
  delayBucketsMs?: number[];
  /** Extra topic configs, e.g. `min.insync.replicas`. */
  configs?: Record<string, string>;
}

export interface TopicOutcome {
  topic: string;
  role: 'job' | 'retry' | 'dlq' | 'delay' | 'parked';
  partitions: number;
  status: 'created' | 'exists';
  /** Partition count found when the topic already existed with a different one. */
  existingPartitions?: number;
}

/**
 * Creates a job topic, its retry tiers and its DLQ; idempotent: existing topics are left as they
 * are and reported (with their partition count when it differs from the request).
 */
export async function createJobTopics(conn: KafkaConnection, spec: JobTopicsSpec): Promise<TopicOutcome[]> {
  const names = topicNames(spec.topic, spec.tierDelays.length, spec.dlqTopic ? { dlq: spec.dlqTopic } : {});
  const wanted: { topic: string; role: TopicOutcome['role'] }[] = [
    { topic: names.main, role: 'job' },
    ...names.tiers.map((topic) => ({ topic, role: 'retry' as const })),
    { topic: names.dlq, role: 'dlq' },
    { topic: names.parked, role: 'parked' },
    ...(spec.delayBucketsMs
      ? delayBucketsFor(spec.topic, spec.delayBucketsMs).map((b) => ({
          topic: b.topic,
          role: 'delay' as const,
        }))
      : []),
  ];
  const admin = createKafka(conn).admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const toCreate = wanted.filter((w) => !existing.has(w.topic));
    const configEntries = Object.entries(spec.configs ?? {}).map(([name, value]) => ({ name, value }));
    await createTopicsReady(
      admin,
      toCreate.map((w) => ({
        topic: w.topic,
        numPartitions: spec.partitions,
        ...(spec.replication ? { replicationFactor: spec.replication } : {}),
        // A delay bucket's record is read once its hold (at most the bucket's length) ended: a week
        // (or twice the length) leaves room for a worker outage.
        configEntries:
          w.role === 'delay'
            ? [
                ...configEntries,
                { name: 'retention.ms', value: String(delayRetentionMs(w.topic, spec.topic)) },
              ]
            : w.role === 'parked'
              ? [...configEntries, ...PARKED_TOPIC_CONFIGS]
              : configEntries,
      })),
    );
    const meta = await admin.fetchTopicMetadata({ topics: wanted.map((w) => w.topic) });
    const counts = new Map(meta.topics.map((t) => [t.name, t.partitions.length]));
    return wanted.map((w) => {
      const partitions = counts.get(w.topic) ?? 0;
      const outcome: TopicOutcome = {
        topic: w.topic,
        role: w.role,
        partitions,
        status: existing.has(w.topic) ? 'exists' : 'created',
      };
      if (existing.has(w.topic) && partitions !== spec.partitions) outcome.existingPartitions = partitions;
      return outcome;
    });
  } finally {
    await admin.disconnect();
  }
}

/**
 * The parking topic (strict key order) holds each parked job until its key is released, and the
 * state of each parked key: compacted (a released job and a released key leave a tombstone), never
 * deleted by age, with small segments so the owner that takes a partition reads little.
 */
export const PARKED_TOPIC_CONFIGS = [
  { name: 'cleanup.policy', value: 'compact' },
  { name: 'segment.ms', value: String(600_000) },
  { name: 'segment.bytes', value: String(16 * 1024 * 1024) },
  { name: 'min.cleanable.dirty.ratio', value: '0.1' },
  { name: 'delete.retention.ms', value: String(3_600_000) },
];

/**
 * Strict key order needs the parking topic (`strand topics create` makes it); a job topic made
 * before it existed gets it when a worker starts, with the job topic's partition count. Partition
 * i of the job topic parks its keys in partition i: a parking topic with fewer partitions (the job
 * topic grew) is refused with what to do.
 */
export async function ensureParkingTopic(
  admin: Admin,
  topics: { main: string; parked: string },
  exists: boolean,
  logger: { info(o: object, msg: string): void },
): Promise<void> {
  const { main, parked } = topics;
  const meta = await admin.fetchTopicMetadata({ topics: exists ? [main, parked] : [main] });
  const count = (t: string) => meta.topics.find((m) => m.name === t)?.partitions.length ?? 0;
  const partitions = count(main);
  if (exists) {
    if (count(parked) >= partitions) return;
    throw new StrandError(
      'KAFKA',
      `${parked} has ${count(parked)} partitions and ${main} ${partitions}: give it as many (kafka-topics.sh --alter --partitions ${partitions}), or set retry.ordering: 'relaxed'`,
    );
  }
  try {
    await createTopicsReady(admin, [
      { topic: parked, numPartitions: partitions, configEntries: PARKED_TOPIC_CONFIGS },
    ]);
    logger.info({ topic: parked, partitions }, 'created the parking topic (retry.ordering strict)');
  } catch (error) {
    if (!String((error as Error).message).includes('already exists'))
      throw new StrandError(
        'KAFKA',
        `could not create ${parked} for retry.ordering 'strict' (${(error as Error).message}); create it with "strand topics create ${main}", or set retry.ordering: 'relaxed'`,
      );
  }
}

/** `ConfigResourceTypes.TOPIC`: kafkajs is CommonJS, and Node's ESM loader does not see that enum as a named export. */
const TOPIC_RESOURCE = 2 as ConfigResourceTypes;

/** `retention.ms` of a topic (its own or the broker default); undefined when unlimited (-1). */
export async function topicRetentionMs(admin: Admin, topic: string): Promise<number | undefined> {
  const res = await admin.describeConfigs({
    includeSynonyms: false,
    resources: [{ type: TOPIC_RESOURCE, name: topic, configNames: ['retention.ms'] }],
  });
  const value = Number(
    res.resources[0]?.configEntries.find((e) => e.configName === 'retention.ms')?.configValue,
  );
  return Number.isFinite(value) && value >= 0 ? value : undefined;
}

function delayRetentionMs(bucketTopic: string, jobTopic: string): number {
  const length = parseDelayLabel(bucketTopic.slice(delayTopicPrefix(jobTopic).length)) ?? 0;
  return Math.max(7 * 86_400_000, 2 * length);
}
