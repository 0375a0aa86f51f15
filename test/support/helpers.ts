import { randomUUID } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { inject, TestRunner } from 'vitest';
import { createKafka, type KafkaConnection } from '../../src/kafka/client.js';
import { createTopicsReady } from '../../src/kafka/topics.js';

/** The broker and registry the global setup found or started. */
export function stack(): { brokers: string[]; registryUrl: string; connection: KafkaConnection } {
  const brokers = inject('brokers');
  return { brokers, registryUrl: inject('registryUrl'), connection: { brokers, clientId: 'strand-test' } };
}

/**
 * A name no other test or earlier run uses: `<prefix>-<8 hex chars>`. Everything made from it
 * (topics, groups, subjects, status records) is deleted after the test file (`cleanUpAfterFile`).
 */
export function uniqueName(prefix: string): string {
  const name = `${prefix}-${randomUUID().slice(0, 8)}`;
  cleanUpAfterFile(name);
  return name;
}

// On globalThis: the setup file that cleans up and the test file may load this module apart.
const shared = globalThis as { __strandTestNames?: Set<string> };
shared.__strandTestNames ??= new Set();
const madeHere = shared.__strandTestNames;

/**
 * Marks a name whose resources (anything whose name contains it) are deleted after this test file
 * by `test/support/cleanup-after-file.ts`, and after the run by the global teardown (the run's
 * ledger) should the file not get there. `uniqueName` marks its names; call this for a name made
 * elsewhere (the demo's topic).
 */
export function cleanUpAfterFile(name: string): void {
  madeHere.add(name);
  try {
    appendFileSync(inject('cleanupLedger'), `${name}\n`);
  } catch {
    // outside a vitest test file (a worker process the test started): its test marks the names
  }
}

/** The names marked in this test file so far. */
export function namesMadeHere(): string[] {
  return [...madeHere];
}

/** Time the rest of a test keeps after a wait gave up: to report, stop workers and clean up. */
const VERDICT_MARGIN_MS = 5000;

/**
 * When the running test must end (its start plus its timeout) less a margin, so a wait inside it
 * gives up with its own message before vitest's timeout would cut the test off without one.
 */
export function testDeadline(): number | undefined {
  const test = TestRunner.getCurrentTest();
  const started = test?.result?.startTime;
  if (!test?.timeout || started === undefined) return undefined;
  return started + test.timeout - VERDICT_MARGIN_MS;
}

/**
 * Polls `check` until it returns a truthy value (returned) or the timeout passes (throws, with the
 * last value). The timeout never runs past the test's own deadline (`testDeadline`).
 */
export async function waitUntil<T>(
  check: () => T | Promise<T>,
  opts: { timeoutMs?: number; intervalMs?: number; what?: string } = {},
): Promise<NonNullable<T>> {
  const own = Date.now() + (opts.timeoutMs ?? 30_000);
  const deadline = Math.min(own, testDeadline() ?? own);
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value) return value as NonNullable<T>;
      last = value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) {
      const cut = deadline < own ? ", cut short by the test's timeout" : '';
      throw new Error(
        `timed out waiting for ${opts.what ?? 'condition'}${cut} (last: ${last instanceof Error ? last.message : String(last)})`,
      );
    }
    await new Promise((r) => setTimeout(r, opts.intervalMs ?? 100));
  }
}

/** Creates topics for one test and returns a function that deletes them. */
export async function createTopics(
  topics: { topic: string; numPartitions?: number; configEntries?: { name: string; value: string }[] }[],
): Promise<() => Promise<void>> {
  const admin = createKafka(stack().connection).admin();
  await admin.connect();
  await createTopicsReady(admin, topics);
  await admin.disconnect();
  return async () => {
    const a = createKafka(stack().connection).admin();
    await a.connect();
    await a.deleteTopics({ topics: topics.map((t) => t.topic) }).catch(() => undefined);
    await a.disconnect();
  };
}

/** Creates a job topic with its tiers and DLQ (unique name) and returns its name and a cleanup. */
export async function jobTopic(
  prefix: string,
  opts: { partitions?: number; tierDelays?: number[]; delayBucketsMs?: number[] } = {},
): Promise<{ topic: string; cleanup: () => Promise<void> }> {
  const { createJobTopics } = await import('../../src/kafka/topics.js');
  const topic = uniqueName(prefix);
  const outcome = await createJobTopics(stack().connection, {
    topic,
    partitions: opts.partitions ?? 6,
    tierDelays: opts.tierDelays ?? [],
    ...(opts.delayBucketsMs ? { delayBucketsMs: opts.delayBucketsMs } : {}),
  });
  return {
    topic,
    cleanup: async () => {
      const a = createKafka(stack().connection).admin();
      await a.connect();
      await a.deleteTopics({ topics: outcome.map((o) => o.topic) }).catch(() => undefined);
      await a.disconnect();
    },
  };
}

/** Committed offsets of a group for a topic, by partition. */
export async function committedOffsets(groupId: string, topic: string): Promise<Map<number, number>> {
  const admin = createKafka(stack().connection).admin();
  await admin.connect();
  try {
    const [res] = await admin.fetchOffsets({ groupId, topics: [topic] });
    return new Map((res?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
  } finally {
    await admin.disconnect();
  }
}
