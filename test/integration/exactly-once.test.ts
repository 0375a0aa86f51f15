import type { ChildProcess } from 'node:child_process';
import type { Transaction } from 'kafkajs';
import { afterEach, describe, expect, it } from 'vitest';
import { paymentSchema } from '../../chaos/payments.js';
import { createKafka } from '../../src/kafka/client.js';
import { KafkaTransactionPort } from '../../src/kafka/round-port.js';
import { partitionCounts } from '../../src/kafka/send.js';
import { createLogger } from '../../src/observability/logger.js';
import {
  committedOffsets,
  createTopics,
  jobTopic,
  stack,
  uniqueName,
  waitUntil,
} from '../support/helpers.js';
import { enqueuePayments } from '../support/jobs.js';
import { WorkerFleet } from '../support/processes.js';
import { type RawRecord, rawConsume } from '../support/raw-kafka.js';
import { paymentWorker } from '../support/worker.js';

let fleet: WorkerFleet | undefined;
afterEach(async () => {
  await fleet?.killAll();
  fleet = undefined;
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Committed offsets of `groupId` have reached the end of every partition of `topics`. */
async function drained(groupId: string, topics: string[]): Promise<{ done: boolean; committed: number }> {
  const admin = createKafka(stack().connection).admin();
  await admin.connect();
  try {
    let done = true;
    let total = 0;
    for (const topic of topics) {
      const committed = await committedOffsets(groupId, topic);
      for (const o of await admin.fetchTopicOffsets(topic)) {
        const at = committed.get(o.partition) ?? -1;
        if (topic === topics[0]) total += Math.max(0, at);
        if (at < Number(o.high)) done = false;
      }
    }
    return { done, committed: total };
  } finally {
    await admin.disconnect();
  }
}

/** How often each `strand-job-id` occurs. */
function counts(records: readonly RawRecord[]): Map<string, number> {
  const out = new Map<string, number>();
  for (const r of records) {
    const id = r.headers['strand-job-id'] ?? '?';
    out.set(id, (out.get(id) ?? 0) + 1);
  }
  return out;
}

/**
 * payments → ledger: three worker processes, the oldest killed with SIGKILL (and a new one started)
 * five times as the input is worked through. Every 7th payment of an account fails its first attempt
 * and goes to the retry tier. Returns the ledger and tier records a read_committed reader sees.
 * `batch`: the workers run a batch handler (pipeline-worker.ts).
 */
async function pipeline(
  exactlyOnce: boolean,
  jobs: number,
  batch?: { maxSize: number; maxWaitMs: number },
  strict = false,
) {
  const { topic, cleanup } = await jobTopic('eos-in', { partitions: 6, tierDelays: [300] });
  const output = uniqueName('eos-out');
  const dropOutput = await createTopics([{ topic: output, numPartitions: 6 }]);
  const groupId = uniqueName('eos-g');
  const { jobIds } = await enqueuePayments(topic, jobs, 300);
  fleet = new WorkerFleet(
    {
      topic,
      groupId,
      output,
      exactlyOnce,
      // A batch worker makes one call at a time of up to 5 jobs (about 250 jobs/s each): at 32
      // calls of 50 the input was done before the first commit, and nothing was killed (CI).
      concurrency: batch ? 1 : 32,
      // A kill then finds a second of finished jobs not committed yet (the control must show them twice).
      commitIntervalMs: 1000,
      // A batch call works longer (up to 40 ms for up to 50 jobs), or the input is done between two kills.
      maxMs: batch ? 40 : 6,
      tiers: [300],
      failEvery: 7,
      strict,
      ...(batch ? { batch } : {}),
    },
    'test/support/pipeline-worker.ts',
  );
  for (let i = 0; i < 3; i++) fleet.start();
  let kills = 0;
  // The oldest worker (the one working longest) is SIGKILLed and a new one started each time the
  // group's committed offsets pass 10, 25, 40, 55 and 70 % of the input: kills follow progress,
  // not the clock, so a fast run (the at-least-once control drains 12,000 jobs in seconds) is killed
  // as often as a slow one, and never while the workers still start or wait out the rebalance the
  // last kill began (when nothing finished is uncommitted and the kill would prove nothing).
  const killer = (async () => {
    for (const share of [0.1, 0.25, 0.4, 0.55, 0.7]) {
      let committed = 0;
      while (fleet && committed < jobs * share) {
        await sleep(200);
        // A fresh group's coordinator may answer "not the coordinator" for a while: ask again.
        committed = await drained(groupId, [topic]).then(
          (d) => d.committed,
          () => committed,
        );
      }
      if (committed > jobs * 0.9 || !fleet) break;
      const victim: ChildProcess | undefined = fleet.alive[0];
      if (!victim) break;
      await fleet.kill(victim, 'SIGKILL');
      kills++;
      fleet.start();
    }
  })();
  await waitUntil(async () => (await drained(groupId, [topic, `${topic}.retry.1`])).done, {
    timeoutMs: 240_000,
    intervalMs: 1000,
    what: 'the group committed the input and its retry tier',
  });
  await killer;
  await fleet.killAll();
  // Every consumer of the output reads committed records only (rawConsume: kafkajs' default, read_committed).
  const ledger = await rawConsume(stack().brokers, output, jobs * 3, { timeoutMs: 60_000 });
  const tier = await rawConsume(stack().brokers, `${topic}.retry.1`, jobs, { timeoutMs: 60_000 });
  await cleanup();
  await dropOutput();
  // Payments go round 300 accounts with sequences 1, 2, … per account: those divisible by 7 fail once.
  const failing = 300 * Math.floor(jobs / 300 / 7);
  return { jobIds, ledger, tier, kills, failing };
}

describe('exactly-once pipelines against the real broker', () => {
  it('payments → ledger with SIGKILLs: each ledger job once per payment; without exactlyOnce, duplicates', async () => {
    const jobs = 12_000;
    const eos = await pipeline(true, jobs);
    const seen = counts(eos.ledger);
    const dupes = [...seen].filter(([, n]) => n > 1);
    expect(eos.kills).toBeGreaterThanOrEqual(2);
    expect(dupes).toEqual([]);
    expect(new Set(seen.keys())).toEqual(new Set(eos.jobIds.map((id) => `${id}:ledger`)));
    // The retry-tier records travel in the rounds too: one per failing first attempt.
    const tierSeen = counts(eos.tier);
    expect([...tierSeen].filter(([, n]) => n > 1)).toEqual([]);
    expect(tierSeen.size).toBeGreaterThan(eos.failing * 0.8);

    // The same run at least once: the check can fail.
    const plain = await pipeline(false, jobs);
    const plainSeen = counts(plain.ledger);
    expect(plain.kills).toBeGreaterThanOrEqual(2);
    expect(new Set(plainSeen.keys())).toEqual(new Set(plain.jobIds.map((id) => `${id}:ledger`)));
    const duplicated = [...plainSeen.values()].filter((n) => n > 1).length;
    console.log(
      `exactly-once: ${eos.ledger.length} ledger records for ${jobs} payments, ${eos.kills} SIGKILLs; ` +
        `at-least-once: ${plain.ledger.length} records, ${duplicated} duplicated, ${plain.kills} SIGKILLs`,
    );
    expect(duplicated).toBeGreaterThan(0);
  }, 600_000);

  it('a batch handler, payments → ledger with SIGKILLs: each ledger job once per payment, none of a failed job', async () => {
    const jobs = 6000;
    const started = Date.now();
    const eos = await pipeline(true, jobs, { maxSize: 5, maxWaitMs: 5 });
    const seen = counts(eos.ledger);
    expect(eos.kills).toBeGreaterThanOrEqual(2);
    // A failing job enqueued its follow-up too: kept, it would show here twice.
    expect([...seen].filter(([, n]) => n > 1)).toEqual([]);
    expect(new Set(seen.keys())).toEqual(new Set(eos.jobIds.map((id) => `${id}:ledger`)));
    const tierSeen = counts(eos.tier);
    expect([...tierSeen].filter(([, n]) => n > 1)).toEqual([]);
    expect(tierSeen.size).toBeGreaterThan(eos.failing * 0.8);
    const eosSeconds = (Date.now() - started) / 1000;

    // The same batches at least once: the check can fail.
    const plain = await pipeline(false, jobs, { maxSize: 5, maxWaitMs: 5 });
    const plainSeen = counts(plain.ledger);
    expect(plain.kills).toBeGreaterThanOrEqual(2);
    expect(new Set(plainSeen.keys())).toEqual(new Set(plain.jobIds.map((id) => `${id}:ledger`)));
    const duplicated = [...plainSeen.values()].filter((n) => n > 1).length;
    console.log(
      `exactly-once batches: ${eos.ledger.length} ledger records for ${jobs} payments, ${tierSeen.size} tier records, ` +
        `${eos.kills} SIGKILLs, ${eosSeconds.toFixed(1)} s; at-least-once: ${plain.ledger.length} records, ` +
        `${duplicated} duplicated, ${plain.kills} SIGKILLs`,
    );
    expect(duplicated).toBeGreaterThan(0);
  }, 240_000);

  it("fencing: a zombie's open round is aborted when the new owner takes the partition", async () => {
    const input = uniqueName('eos-fence-in');
    const output = uniqueName('eos-fence-out');
    const drop = await createTopics([
      { topic: input, numPartitions: 1 },
      { topic: output, numPartitions: 1 },
    ]);
    const groupId = uniqueName('eos-fence-g');
    const kafka = createKafka(stack().connection);
    const admin = kafka.admin();
    await admin.connect();
    const logger = createLogger({ level: 'error' });
    const counts = partitionCounts(admin);
    // The zombie holds its round open between its writes and its commit until released.
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let reachedCommit!: () => void;
    const atCommit = new Promise<void>((r) => (reachedCommit = r));
    class HeldPort extends KafkaTransactionPort {
      protected override async end(tx: Transaction): Promise<void> {
        reachedCommit();
        await held;
        await super.end(tx);
      }
    }
    const zombie = new HeldPort(kafka, { groupId, counts, logger });
    const owner = new KafkaTransactionPort(kafka, { groupId, counts, logger });
    const record = (id: string) => ({ key: 'k', value: Buffer.from(id), headers: { 'strand-job-id': id } });
    try {
      await zombie.fence(input, 0);
      const zombieRound = zombie.commitRound({
        ...{ topic: input, partition: 0 },
        records: [{ topic: output, messages: [record('zombie-1'), record('zombie-2')] }],
        offset: { topic: input, partition: 0, offset: 2, metadata: '' },
      });
      await atCommit;
      // The new owner takes the partition while the zombie's transaction is open.
      await owner.fence(input, 0);
      release();
      await expect(zombieRound).rejects.toThrow();
      expect((await committedOffsets(groupId, input)).get(0) ?? -1).toBe(-1);
      await owner.commitRound({
        ...{ topic: input, partition: 0 },
        records: [{ topic: output, messages: [record('owner-1')] }],
        offset: { topic: input, partition: 0, offset: 2, metadata: 's1:' },
      });
      const seen = await rawConsume(stack().brokers, output, 10, { timeoutMs: 30_000 });
      expect(seen.map((r) => r.headers['strand-job-id'])).toEqual(['owner-1']);
      expect((await committedOffsets(groupId, input)).get(0)).toBe(2);
      const [fetched] = await admin.fetchOffsets({ groupId, topics: [input] });
      expect(fetched?.partitions[0]?.metadata).toBe('s1:');
    } finally {
      release();
      await zombie.stop();
      await owner.stop();
      await admin.deleteGroups([groupId]).catch(() => undefined);
      await admin.disconnect();
      await drop();
    }
  }, 120_000);
  it('a worker whose round is fenced gives the round up, rejoins and ends with every ledger job once (follow-ups by topic and schema)', async () => {
    const { topic, cleanup } = await jobTopic('eos-steal-in', { partitions: 2 });
    const output = uniqueName('eos-steal-out');
    const dropOutput = await createTopics([{ topic: output, numPartitions: 2 }]);
    const groupId = uniqueName('eos-steal-g');
    const jobs = 3000;
    const { jobIds } = await enqueuePayments(topic, jobs, 50);
    const worker = paymentWorker(topic, groupId, {
      exactlyOnce: true,
      commitIntervalMs: 300,
      concurrency: 8,
      handler: async (job, ctx) => {
        await sleep(2);
        // The topic + schema form: the worker keeps the producer (the SIGKILL test passes a JobProducer).
        await ctx.enqueue(
          { topic: output, schema: paymentSchema },
          { key: job.key, data: job.data, jobId: `${job.id}:ledger` },
        );
      },
    });
    let rebalances = 0;
    worker.on('rebalance', () => rebalances++);
    const kafka = createKafka(stack().connection);
    const admin = kafka.admin();
    await admin.connect();
    const thief = new KafkaTransactionPort(kafka, {
      groupId,
      counts: partitionCounts(admin),
      logger: createLogger({ level: 'silent' }),
    });
    try {
      await worker.start();
      await waitUntil(async () => (await drained(groupId, [topic])).committed > 300, {
        timeoutMs: 120_000,
        what: 'progress before the transactional id is taken',
      });
      const before = rebalances;
      // Another holder takes partition 0's transactional id: the worker's next round there is refused.
      await thief.fence(topic, 0);
      await waitUntil(async () => (await drained(groupId, [topic])).done, {
        timeoutMs: 180_000,
        intervalMs: 1000,
        what: 'the input committed after the fenced round',
      });
      expect(rebalances).toBeGreaterThan(before); // it left the group and joined again
      const seen = counts(await rawConsume(stack().brokers, output, jobs * 2, { timeoutMs: 60_000 }));
      expect([...seen].filter(([, n]) => n > 1)).toEqual([]);
      expect(new Set(seen.keys())).toEqual(new Set(jobIds.map((id) => `${id}:ledger`)));
    } finally {
      await worker.stop();
      await thief.stop();
      await admin.disconnect();
      await cleanup();
      await dropOutput();
    }
  }, 300_000);
});
