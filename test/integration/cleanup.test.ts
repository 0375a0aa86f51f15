import { Kafka, logLevel } from 'kafkajs';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/observability/logger.js';
import { CONTROL_TOPIC, STATUS_TOPIC } from '../../src/status/snapshot.js';
import { Worker } from '../../src/worker/worker.js';
import { cleanUpNames, isEmpty, listTraces, madeFrom } from '../support/cleanup.js';
import { jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { enqueuePayments, type Payment } from '../support/jobs.js';
import { rawProduce } from '../support/raw-kafka.js';

const quiet = createLogger({ level: process.env.TEST_LOG ?? 'error' });

function admin() {
  return new Kafka({ brokers: stack().brokers, logLevel: logLevel.NOTHING }).admin();
}

async function groupIds(): Promise<string[]> {
  const a = admin();
  await a.connect();
  try {
    return (await a.listGroups()).groups.map((g) => g.groupId);
  } finally {
    await a.disconnect();
  }
}

/** A consumer group with committed offsets, and no member left (kafkajs' setOffsets takes 10 s). */
async function commitSomething(groupId: string, topic: string): Promise<void> {
  const consumer = new Kafka({ brokers: stack().brokers, logLevel: logLevel.NOTHING }).consumer({ groupId });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let seen = 0;
  await consumer.run({ autoCommitInterval: 100, eachMessage: async () => void seen++ });
  await waitUntil(() => seen > 0, { what: `${groupId} consumed a record` });
  await consumer.disconnect(); // commits what it consumed
}

/** The last snapshot a worker killed with SIGKILL leaves in `__strand_status` (no tombstone follows). */
function killedWorkerSnapshot(workerId: string, group: string, topic: string): Buffer {
  return Buffer.from(
    JSON.stringify({
      v: 1,
      workerId,
      group,
      topic,
      tiers: [],
      dlq: `${topic}.dlq`,
      host: 'test',
      pid: 1,
      version: '0.0.0',
      state: 'running',
      startedAt: Date.now() - 60_000,
      at: Date.now(),
      assigned: [],
      inflight: 0,
      concurrency: 1,
      buffered: { jobs: 0, bytes: 0 },
      counters: { completed: 0, failed: 0, retried: 0, dead: 0, duplicate: 0 },
      oldestPendingAgeSeconds: 0,
      rssBytes: 0,
    }),
  );
}

describe('tests leave the stack as they found it', () => {
  it('a stopped worker leaves no consumer group of its status agent behind', async () => {
    const { topic, cleanup } = await jobTopic('cleanup-agent', { partitions: 1 });
    const w = new Worker<Payment>({
      brokers: stack().brokers,
      registry: { url: stack().registryUrl },
      topic,
      groupId: uniqueName(`${topic}-g`),
      logger: quiet,
      retry: { tiers: [] },
      handler: async () => undefined,
    });
    await w.start();
    const agentGroup = (ids: string[]) => ids.find((g) => g.startsWith(`strand-agent-${w.workerId}-`));
    // The agent tails the control topic with a throwaway group of its own.
    await waitUntil(async () => agentGroup(await groupIds()), { what: "the agent's tail group" });
    await w.stop();
    // Kafka 4 would list the empty group for up to 10 minutes: the tail deletes it when it stops.
    expect(agentGroup(await groupIds())).toBeUndefined();
    await cleanup();
  });

  it('cleanUpNames deletes topics, groups, subjects, status and control records made from the names, and nothing else', async () => {
    const { topic } = await jobTopic('cleanup-all', { partitions: 2, tierDelays: [1000] });
    const other = await jobTopic('cleanup-other', { partitions: 1 });
    await enqueuePayments(topic, 20, 4); // registers <topic>-value
    await enqueuePayments(other.topic, 1, 1);
    const group = uniqueName(`${topic}-g`);
    const replayGroup = `strand-dlq-replay.${topic}.0123456789ab`;
    await Promise.all([group, replayGroup].map((g) => commitSomething(g, topic)));
    await rawProduce(stack().brokers, STATUS_TOPIC, [
      { key: `killed-${topic}`, value: killedWorkerSnapshot(`killed-${topic}`, group, topic) },
    ]);
    await rawProduce(stack().brokers, CONTROL_TOPIC, [
      { key: group, value: Buffer.from(JSON.stringify({ v: 1, group, action: 'pause', at: 1, by: 'test' })) },
    ]);
    const found = await listTraces(stack(), madeFrom([topic]));
    expect(found).toEqual({
      topics: [`${topic}`, `${topic}.dlq`, `${topic}.parked`, `${topic}.retry.1`].sort(),
      groups: [group, replayGroup].sort(),
      subjects: [`${topic}-value`],
      workers: [{ workerId: `killed-${topic}`, group, topic }],
      controls: [group],
    });

    // A group with a member (a worker still running) cannot go: it is reported as left.
    const consumer = new Kafka({ brokers: stack().brokers, logLevel: logLevel.NOTHING }).consumer({
      groupId: group,
    });
    await consumer.connect();
    await consumer.subscribe({ topic: other.topic });
    await consumer.run({ eachMessage: async () => undefined });
    await waitUntil(async () => {
      const d = admin();
      await d.connect();
      const { groups } = await d.describeGroups([group]).finally(() => d.disconnect());
      return groups[0]?.members.length === 1;
    });
    const left = await cleanUpNames(stack(), [topic], { groupWaitMs: 2000 });
    expect(left.groups).toEqual([group]);
    expect(left.topics).toEqual([]);
    await consumer.disconnect();

    expect(isEmpty(await cleanUpNames(stack(), [topic]))).toBe(true);
    expect(isEmpty(await listTraces(stack(), madeFrom([topic])))).toBe(true);
    // Soft-deleted subjects are gone too (a name could not be registered again otherwise).
    const deleted = (await (await fetch(`${stack().registryUrl}/subjects?deleted=true`)).json()) as string[];
    expect(deleted).not.toContain(`${topic}-value`);
    // What another test made is still there.
    const kept = await listTraces(stack(), madeFrom([other.topic]));
    expect(kept.topics).toContain(other.topic);
    expect(kept.subjects).toEqual([`${other.topic}-value`]);
    await other.cleanup();
  });
});
