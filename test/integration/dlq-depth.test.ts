import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { listDeadJobs, replayDeadJobs } from '../../src/failure/dlq.js';
import { HEADERS } from '../../src/headers.js';
import { type Admin, createKafka, Partitioners, type Producer } from '../../src/kafka/client.js';
import { dlqDepth } from '../../src/lag/lag.js';
import { createTopics, jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { rawConsume } from '../support/raw-kafka.js';

/**
 * `queue_dlq_depth` after filtered replays: dead-lettered records not yet replayed. A filtered replay
 * commits its position past the records it skipped; those must still count.
 */
let admin: Admin;
let producer: Producer;
// Fresh clients per test: kafkajs keeps asking for the metadata of every topic a client once used,
// and fails once an earlier test deleted them.
beforeEach(async () => {
  const kafka = createKafka(stack().connection);
  admin = kafka.admin();
  producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
  await admin.connect();
  await producer.connect();
});
afterEach(async () => {
  await producer?.disconnect();
  await admin?.disconnect();
});

/** Dead records as the worker's router writes them, into one DLQ partition, in the given key order. */
async function deadLetter(topic: string, partition: number, keys: string[]): Promise<void> {
  await producer.send({
    topic: `${topic}.dlq`,
    acks: -1,
    messages: keys.map((key, i) => ({
      partition,
      key,
      value: Buffer.from(`job-${key}-${i}`),
      headers: {
        [HEADERS.jobId]: uniqueName(`job-${key}`),
        [HEADERS.errorClass]: key === 'a' ? 'NonRetriableError' : 'TimeoutError',
        [HEADERS.errorMessage]: 'downstream said no',
        [HEADERS.attempt]: '1',
        [HEADERS.failedAt]: String(Date.now()),
        [HEADERS.originTopic]: topic,
      },
    })),
  });
}

async function endOffsets(topic: string): Promise<number> {
  return (await admin.fetchTopicOffsets(topic)).reduce((s, o) => s + Number(o.high), 0);
}

/** Keys of the committed records of a topic (read by kafkajs' own consumer, not Strand's code). */
async function committedKeys(topic: string): Promise<string[]> {
  return (await rawConsume(stack().brokers, topic, 1000)).map((r) => r.key ?? '').sort();
}

describe('DLQ depth after filtered replays', () => {
  it('replaying --key a (5 of 10) leaves depth 5; a repeat sends nothing; new dead jobs count; the rest brings it to 0', async () => {
    const { topic, cleanup } = await jobTopic('dlq-depth', { partitions: 2 });
    const conn = stack().connection;
    // Interleaved keys in both partitions, so a key filter skips records below its position.
    await deadLetter(topic, 0, ['a', 'b', 'a', 'b', 'a', 'b']);
    await deadLetter(topic, 1, ['b', 'a', 'b', 'a']);
    expect(await dlqDepth(admin, topic, `${topic}.dlq`)).toBe(10);

    const first = await replayDeadJobs(conn, topic, { key: 'a' });
    expect(first).toMatchObject({ scanned: 10, matched: 5, sent: 5 });
    expect(await committedKeys(topic)).toEqual(['a', 'a', 'a', 'a', 'a']);
    const afterFirst = await dlqDepth(admin, topic, `${topic}.dlq`);
    console.info(`depth: 10 dead, --key a replayed 5 → ${afterFirst}`);
    expect(afterFirst).toBe(5);

    const again = await replayDeadJobs(conn, topic, { key: 'a' });
    expect(again.sent).toBe(0);
    expect(await dlqDepth(admin, topic, `${topic}.dlq`)).toBe(5);

    // Two more dead jobs: depth 7; --key a picks up only the new one.
    await deadLetter(topic, 0, ['b', 'a']);
    expect(await dlqDepth(admin, topic, `${topic}.dlq`)).toBe(7);
    expect((await replayDeadJobs(conn, topic, { key: 'a' })).sent).toBe(1);
    expect(await dlqDepth(admin, topic, `${topic}.dlq`)).toBe(6);

    // The b jobs by error class (a different filter and group): nothing left unreplayed.
    const rest = await replayDeadJobs(conn, topic, { errorClass: 'TimeoutError' });
    expect(rest).toMatchObject({ matched: 6, sent: 6 });
    expect(await dlqDepth(admin, topic, `${topic}.dlq`)).toBe(0);
    expect(await committedKeys(topic)).toEqual([...Array(6).fill('a'), ...Array(6).fill('b')]);

    // A dry run and a listing are not replays.
    await deadLetter(topic, 1, ['a']);
    expect((await replayDeadJobs(conn, topic, { dryRun: true })).matched).toBe(13);
    expect(await listDeadJobs(conn, topic)).toHaveLength(13);
    expect(await dlqDepth(admin, topic, `${topic}.dlq`)).toBe(1);
    await cleanup();
  });

  it('an unfiltered replay with --limit counts exactly the records it sent', async () => {
    const { topic, cleanup } = await jobTopic('dlq-depth-limit', { partitions: 1 });
    await deadLetter(topic, 0, ['a', 'b', 'a', 'b', 'a', 'b', 'a', 'b']);
    expect((await replayDeadJobs(stack().connection, topic, { limit: 3 })).sent).toBe(3);
    expect(await dlqDepth(admin, topic, `${topic}.dlq`)).toBe(5);
    expect((await replayDeadJobs(stack().connection, topic, {})).sent).toBe(5);
    expect(await dlqDepth(admin, topic, `${topic}.dlq`)).toBe(0);
    await cleanup();
  });
});

describe('reading the DLQ to its end', () => {
  it('a read that only finds aborted records ends on the idle path and leaves no interval behind', async () => {
    const topic = uniqueName('dlq-idle');
    const cleanup = await createTopics([{ topic: `${topic}.dlq`, numPartitions: 1 }]);
    // Records of an aborted transaction: the end offset moves, a read-committed consumer sees nothing,
    // and kafkajs hands no batch for them.
    const tx = createKafka(stack().connection).producer({
      createPartitioner: Partitioners.DefaultPartitioner,
      transactionalId: uniqueName('dlq-idle-tx'),
      idempotent: true,
      maxInFlightRequests: 1,
    });
    await tx.connect();
    const t = await tx.transaction();
    await t.send({ topic: `${topic}.dlq`, messages: [{ value: 'x' }, { value: 'y' }] });
    await t.abort();
    await tx.disconnect();
    await waitUntil(async () => (await endOffsets(`${topic}.dlq`)) > 0, {
      what: 'the aborted records in the log',
    });

    const created: unknown[] = [];
    const cleared = new Set<unknown>();
    const realSet = globalThis.setInterval;
    const realClear = globalThis.clearInterval;
    const setSpy = vi.spyOn(globalThis, 'setInterval').mockImplementation(((fn: () => void, ms?: number) => {
      const handle = realSet(fn, ms);
      created.push(handle);
      return handle;
    }) as typeof setInterval);
    const clearSpy = vi.spyOn(globalThis, 'clearInterval').mockImplementation(((handle?: NodeJS.Timeout) => {
      cleared.add(handle);
      realClear(handle);
    }) as typeof clearInterval);
    const started = Date.now();
    let jobs: unknown[];
    try {
      jobs = await listDeadJobs(stack().connection, topic);
    } finally {
      setSpy.mockRestore();
      clearSpy.mockRestore();
    }
    const tookMs = Date.now() - started;
    const leaked = created.filter((h) => !cleared.has(h));
    for (const h of leaked) realClear(h as NodeJS.Timeout);
    console.info(
      `idle read of aborted records: ${tookMs} ms, ${created.length} interval(s), ${leaked.length} left running`,
    );
    expect(jobs).toEqual([]);
    expect(created.length).toBeGreaterThan(0);
    expect(leaked).toEqual([]);
    await cleanup();
  });
});
