import { expect } from 'vitest';
import { HEADERS } from '../../src/headers.js';
import { createKafka } from '../../src/kafka/client.js';
import { replayGroupPrefix } from '../../src/lag/replayed.js';
import { runCli } from './cli.js';
import { stack, uniqueName } from './helpers.js';
import { type RawRecord, rawConsume, rawProduce } from './raw-kafka.js';

/** A dead job as the DLQ tests write it (with kafkajs' own producer, no Strand code). */
export interface Dead {
  jobId: string;
  key: string;
  partition: number;
  failedAt: number;
}

/** Writes the dead records to the DLQ and checks that exactly those (after `before`) are there. */
export async function writeDead(topic: string, dead: Dead[], before: Dead[] = []): Promise<void> {
  await rawProduce(
    stack().brokers,
    `${topic}.dlq`,
    dead.map((d) => ({
      key: d.key,
      partition: d.partition,
      value: Buffer.from(`body of ${d.jobId}`),
      headers: {
        [HEADERS.jobId]: d.jobId,
        [HEADERS.errorClass]: 'TimeoutError',
        [HEADERS.errorMessage]: 'downstream timed out',
        [HEADERS.attempt]: '3',
        [HEADERS.failedAt]: String(d.failedAt),
        [HEADERS.originTopic]: topic,
      },
    })),
  );
  expect(await replayedIds(`${topic}.dlq`, ids([...before, ...dead]))).toEqual(ids([...before, ...dead]));
}

/** `n` dead jobs of keys acct-a and acct-b in turn, in partition 0 unless `f` says otherwise. */
export function deadJobs(n: number, f: (i: number) => Partial<Dead> = () => ({})): Dead[] {
  return Array.from({ length: n }, (_, i) => ({
    jobId: uniqueName(`dead-${i}`),
    key: i % 2 === 0 ? 'acct-a' : 'acct-b',
    partition: 0,
    failedAt: Date.now(),
    ...f(i),
  }));
}

/** Job ids on a topic (committed records only), sorted. */
export async function replayedIds(topic: string, expected?: readonly string[]): Promise<string[]> {
  // A replay commits a transaction; its markers reach the partitions a moment after the commit
  // returned, and until then a read_committed reader (this one) sees the partition end before the
  // replayed records (Kafka's last stable offset), so a read of what is expected is asked again.
  const deadline = Date.now() + 20_000;
  for (;;) {
    const records: RawRecord[] = await rawConsume(stack().brokers, topic, 1000);
    const read = records.map((r) => r.headers[HEADERS.jobId] ?? '?').sort();
    if (!expected || read.join() === [...expected].sort().join() || Date.now() > deadline) return read;
    await new Promise((r) => setTimeout(r, 500));
  }
}

export const ids = (dead: Dead[]) => dead.map((d) => d.jobId).sort();

/** Deletes the replay groups a test's replays of `topic` left (one per filter, and the picks'). */
export async function deleteReplayGroups(topic: string): Promise<void> {
  const admin = createKafka(stack().connection).admin();
  await admin.connect();
  try {
    const { groups } = await admin.listGroups();
    const mine = groups.map((g) => g.groupId).filter((g) => g.startsWith(replayGroupPrefix(topic)));
    if (mine.length > 0) await admin.deleteGroups(mine);
  } finally {
    await admin.disconnect();
  }
}

/**
 * A DLQ whose `--key acct-a` filter replayed before: 10 dead jobs (acct-a and acct-b in turn, two
 * partitions), `strand dlq replay --key acct-a` (5 sent), then 5 more (3 of acct-a, 2 of acct-b).
 */
export async function deadAfterKeyReplay(topic: string): Promise<{ first: Dead[]; later: Dead[] }> {
  const first = deadJobs(10, (i) => ({ partition: i % 2 }));
  await writeDead(topic, first);
  expect((await runCli(['dlq', 'replay', topic, '--key', 'acct-a'])).stdout).toMatch(/^replayed 5 job\(s\)/);
  const later = deadJobs(5, (i) => ({ key: i < 3 ? 'acct-a' : 'acct-b', partition: i % 2 }));
  await writeDead(topic, later, first);
  return { first, later };
}
