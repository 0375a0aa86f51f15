/**
 * `npm run bench:eos [-- --quick]`: what `exactlyOnce` costs. A payments → ledger stage (each job
 * enqueues one ledger job with `ctx.enqueue`) runs with `exactlyOnce` off and on, in turn, in the
 * same run (the machine is shared: compare the ratios, not the absolute figures):
 * - throughput: a backlog of `--jobs` payments over 300 keys (6 partitions), timed from the worker's
 *   start until a read_committed reader saw every ledger job;
 * - latency: `--rate` payments/s (default 100) for 8 s while the worker runs; per job, from its enqueue to its ledger
 *   job being visible to the read_committed reader (p50, p99).
 * Each mode with `commitIntervalMs` 1000 (the default) and 100. Writes bench/results/exactly-once.json.
 */
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { Kafka, logLevel } from 'kafkajs';
import { Worker } from '../src/worker/worker.js';
import { writeResult } from './env.js';
import {
  type BenchStack,
  benchProducer,
  benchStack,
  benchTopic,
  fill,
  type Payment,
  payment,
  quiet,
  round,
} from './lib.js';

const { values } = parseArgs({
  options: { quick: { type: 'boolean' }, jobs: { type: 'string' }, rate: { type: 'string' } },
});
const quick = values.quick === true;
const jobs = Number(values.jobs ?? (quick ? 10_000 : 30_000));
/** Payments per second in the latency phase: below what both modes sustain, so no queue builds up. */
const rate = Number(values.rate ?? 100);
const s = await benchStack();

/** A read_committed reader of `topic` that notes when each ledger job became visible. */
async function reader(topic: string, onRecord: (createdAt: number, at: number) => void) {
  const kafka = new Kafka({ brokers: s.brokers, clientId: 'bench-eos-reader', logLevel: logLevel.NOTHING });
  const consumer = kafka.consumer({
    groupId: `bench-eos-${randomUUID()}`,
    readUncommitted: false,
    maxWaitTimeInMs: 50,
  });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    autoCommit: false,
    eachBatch: async ({ batch }) => {
      const at = Date.now();
      for (const m of batch.messages)
        onRecord(Number(m.headers?.['strand-enqueued-at']?.toString() ?? at), at);
    },
  });
  return consumer;
}

async function stage(s: BenchStack, exactlyOnce: boolean, commitIntervalMs: number, input: string) {
  const output = await benchTopic(s, 'eos-out', 6);
  const ledger = await benchProducer(s, output);
  const worker = new Worker<Payment>({
    brokers: s.brokers,
    registry: { url: s.registryUrl },
    topic: input,
    groupId: `bench-eos-${randomUUID()}`,
    exactlyOnce,
    commitIntervalMs,
    concurrency: 64,
    retry: { tiers: [] },
    status: false,
    logger: quiet,
    handler: async (job, ctx) => {
      await ctx.enqueue(ledger, { key: job.key, data: job.data, jobId: `${job.id}:ledger` });
    },
  });
  return { output, ledger, worker };
}

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;

async function throughput(exactlyOnce: boolean, commitIntervalMs: number): Promise<number> {
  const input = await benchTopic(s, 'eos-in', 6);
  await fill(s, input, jobs, 300);
  const { output, ledger, worker } = await stage(s, exactlyOnce, commitIntervalMs, input);
  let seen = 0;
  let done!: () => void;
  const all = new Promise<void>((r) => (done = r));
  const consumer = await reader(output, () => {
    if (++seen === jobs) done();
  });
  const t0 = performance.now();
  await worker.start();
  await all;
  const jobsPerSecond = jobs / ((performance.now() - t0) / 1000);
  await worker.stop();
  await Promise.all([consumer.disconnect(), ledger.disconnect()]);
  return round(jobsPerSecond);
}

async function latency(
  exactlyOnce: boolean,
  commitIntervalMs: number,
): Promise<{ p50: number; p99: number }> {
  const input = await benchTopic(s, 'eos-lat', 6);
  const { output, ledger, worker } = await stage(s, exactlyOnce, commitIntervalMs, input);
  const latencies: number[] = [];
  const consumer = await reader(output, (createdAt, at) => latencies.push(at - createdAt));
  await worker.start();
  const producer = await benchProducer(s, input);
  const total = rate * 8;
  const step = Math.max(1, Math.round(rate / 10));
  for (let i = 0; i < total; i += step) {
    const batch = [];
    for (let j = i; j < i + step; j++) {
      const data = payment(j, 300);
      batch.push({ key: data.accountId, data });
    }
    await producer.enqueueMany(batch);
    await new Promise((r) => setTimeout(r, 100));
  }
  const until = Date.now() + 30_000;
  while (latencies.length < total && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
  await worker.stop();
  await Promise.all([consumer.disconnect(), ledger.disconnect(), producer.disconnect()]);
  const sorted = [...latencies].sort((a, b) => a - b);
  return { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99) };
}

const results: Record<string, unknown>[] = [];
for (const commitIntervalMs of [1000, 100]) {
  for (const exactlyOnce of [false, true]) {
    const jobsPerSecond = await throughput(exactlyOnce, commitIntervalMs);
    const lat = await latency(exactlyOnce, commitIntervalMs);
    const row = {
      exactlyOnce,
      commitIntervalMs,
      jobsPerSecond,
      latencyP50Ms: lat.p50,
      latencyP99Ms: lat.p99,
    };
    console.log(JSON.stringify(row));
    results.push(row);
  }
}
const ratio = (ci: number) => {
  const off = results.find((r) => r.commitIntervalMs === ci && r.exactlyOnce === false)!;
  const on = results.find((r) => r.commitIntervalMs === ci && r.exactlyOnce === true)!;
  return {
    commitIntervalMs: ci,
    throughputOnOverOff: round((on.jobsPerSecond as number) / (off.jobsPerSecond as number), 2),
    p99OnOverOff: round((on.latencyP99Ms as number) / (off.latencyP99Ms as number), 2),
  };
};
const file = writeResult('exactly-once', {
  jobs,
  latencyRate: rate,
  keys: 300,
  partitions: 6,
  note: 'one run, the modes in turn on a shared 2-core machine: compare ratios',
  results,
  ratios: [ratio(1000), ratio(100)],
});
console.log(`wrote ${file}`);
process.exit(0);
