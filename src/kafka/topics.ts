import { topicNames } from '../failure/topics.js';
import { createKafka, type KafkaConnection } from './client.js';

export interface JobTopicsSpec {
  topic: string;
  partitions: number;
  replication?: number;
  /** Retry tier delays in ms (one topic each). */
  tierDelays: number[];
  dlqTopic?: string;
  /** Extra topic configs, e.g. `min.insync.replicas`. */
  configs?: Record<string, string>;
}

export interface TopicOutcome {
  topic: string;
  role: 'job' | 'retry' | 'dlq';
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
  ];
  const admin = createKafka(conn).admin();
  await admin.connect();
  try {
    const existing = new Set(await admin.listTopics());
    const toCreate = wanted.filter((w) => !existing.has(w.topic));
    const configEntries = Object.entries(spec.configs ?? {}).map(([name, value]) => ({ name, value }));
    if (toCreate.length > 0) {
      await admin.createTopics({
        waitForLeaders: true,
        topics: toCreate.map((w) => ({
          topic: w.topic,
          numPartitions: spec.partitions,
          ...(spec.replication ? { replicationFactor: spec.replication } : {}),
          configEntries,
        })),
      });
    }
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
