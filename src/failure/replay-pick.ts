import { readRanges } from '../kafka/browse.js';
import { createKafka, type KafkaConnection, Partitioners } from '../kafka/client.js';
import { partitionCounts, sendAcknowledged } from '../kafka/send.js';
import { fenceEarlierTransactions, sendOffsetsInTransaction } from '../kafka/transaction.js';
import { replayedSets } from '../lag/lag.js';
import {
  addReplayed,
  decodeReplayed,
  encodeReplayed,
  pruneReplayed,
  replayGroupPrefix,
  wasReplayed,
} from '../lag/replayed.js';
import { topicNames } from '../topology/topics.js';
import { replayRecords } from './dlq.js';

export { wasReplayed } from '../lag/replayed.js';

/**
 * The replay group of jobs replayed one by one (the console's "replay this job"): one group per job
 * topic whose commit metadata holds every DLQ offset picked so far, so `dlqDepth` subtracts them
 * like any other replay.
 */
export function pickGroupName(topic: string): string {
  return `${replayGroupPrefix(topic)}picked`;
}

export type PickResult =
  | { status: 'sent'; partition: number; offset: string }
  | { status: 'already-replayed' }
  | { status: 'not-found' };

/**
 * Replays the one dead job at `partition`/`offset` of the DLQ, exactly once: the job is sent and
 * its offset added to the pick group's set in one Kafka transaction, and a job that any replay
 * already sent is refused (a second click does not send it twice).
 */
export async function replayDeadJob(
  conn: KafkaConnection,
  topic: string,
  at: { partition: number; offset: number; dlqTopic?: string },
): Promise<PickResult> {
  const dlq = at.dlqTopic ?? topicNames(topic, 0).dlq;
  const [record] = await readRanges(conn, dlq, [
    { partition: at.partition, from: at.offset, to: at.offset + 1 },
  ]);
  if (!record) return { status: 'not-found' };
  const group = pickGroupName(topic);
  const kafka = createKafka(conn);
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    transactionalId: group,
    idempotent: true,
    maxInFlightRequests: 1,
    allowAutoTopicCreation: false,
  });
  const admin = kafka.admin();
  await producer.connect();
  await admin.connect();
  try {
    // An earlier pick still in flight is fenced before we read the set it may be adding to.
    await fenceEarlierTransactions(producer);
    if (wasReplayed((await replayedSets(admin, topic, dlq)).get(at.partition), at.offset))
      return { status: 'already-replayed' };
    const [committed] = await admin.fetchOffsets({ groupId: group, topics: [dlq] });
    const mine = committed?.partitions.find((p) => p.partition === at.partition);
    const position = Number(mine?.offset ?? -1);
    const low = Number((await admin.fetchTopicOffsets(dlq)).find((o) => o.partition === at.partition)?.low);
    const set = pruneReplayed(
      addReplayed(decodeReplayed(mine?.metadata) ?? { runs: [] }, [at.offset]),
      Number.isFinite(low) ? low : 0,
    );
    const replay = replayRecords(topic, { dlq, partition: at.partition }, [record.message]);
    const tx = await producer.transaction();
    try {
      const [placed] = await sendAcknowledged(tx, [{ topic, messages: replay.records }], {
        counts: partitionCounts(admin),
        inTransaction: true,
      });
      // The metadata rides along as in `replayDeadJobs` (kafkajs' type omits it, the protocol has it).
      const partitions = [
        {
          partition: at.partition,
          offset: String(Math.max(position, at.offset + 1)),
          metadata: encodeReplayed(set),
        },
      ];
      await sendOffsetsInTransaction(tx, { consumerGroupId: group, topics: [{ topic: dlq, partitions }] });
      await tx.commit();
      replay.settle();
      return { status: 'sent', partition: placed?.partition ?? -1, offset: placed?.offset ?? '' };
    } catch (error) {
      replay.settle(error);
      await tx.abort().catch(() => undefined);
      throw error;
    }
  } finally {
    await producer.disconnect().catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
  }
}
