import { spawn } from 'node:child_process';
import { rssMiB } from '../chaos/fleet.js';
import { HEADERS } from '../src/headers.js';
import { createKafka } from '../src/kafka/client.js';
import type { WorkerOptions } from '../src/worker/options.js';
import { Worker } from '../src/worker/worker.js';
import {
  type BenchStack,
  benchProducer,
  benchTopic,
  fill,
  kafkaTool,
  type Payment,
  payment,
  percentile,
  quiet,
  round,
  until,
} from './lib.js';

export interface Size {
  quick: boolean;
}

function worker(
  s: BenchStack,
  topic: string,
  opts: Partial<WorkerOptions<Payment>> & Pick<WorkerOptions<Payment>, 'handler'>,
) {
  return new Worker<Payment>({
    brokers: s.brokers,
    registry: { url: s.registryUrl },
    topic,
    groupId: `${topic}-strand`,
    retry: { tiers: [] },
    logger: quiet,
    ...opts,
  });
}

/** A raw kafkajs eachBatch consumer reading the same topic without decoding: the baseline. */
let rawRuns = 0;
async function rawConsume(s: BenchStack, topic: string, count: number): Promise<number> {
  const consumer = createKafka(s.conn).consumer({
    // A new group each run: the previous run committed its offsets.
    groupId: `${topic}-raw-${rawRuns++}`,
    maxBytesPerPartition: 1024 * 1024,
  });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let seen = 0;
  let first = 0;
  let last = 0;
  await consumer.run({
    autoCommit: true,
    partitionsConsumedConcurrently: 3,
    eachBatch: async ({ batch }) => {
      // The clock starts at the first batch, as for Strand at its first job.
      if (!first) first = performance.now();
      seen += batch.messages.length;
      last = performance.now();
    },
  });
  if (!(await until(() => seen >= count, 300_000))) throw new Error(`raw consumer saw ${seen} of ${count}`);
  await consumer.disconnect();
  return count / ((last - first) / 1000);
}

async function strandConsume(
  s: BenchStack,
  topic: string,
  count: number,
  opts: Partial<WorkerOptions<Payment>> = {},
): Promise<{ jobsPerSecond: number; worker: Worker<Payment> }> {
  let done = 0;
  let first = 0;
  let last = 0;
  const w = worker(s, topic, {
    concurrency: 64,
    maxBufferedJobs: 5000,
    metrics: { port: 0, host: '127.0.0.1' },
    handler: () => {
      if (!first) first = performance.now();
      done++;
      last = performance.now();
    },
    ...opts,
  });
  await w.start();
  await until(() => done >= count, 600_000);
  await w.stop();
  return { jobsPerSecond: count / ((last - first) / 1000), worker: w };
}

/** Scenario 1: no-op throughput vs raw kafkajs and Kafka's ConsumerPerformance. */
export async function throughput(s: BenchStack, size: Size) {
  const jobs = size.quick ? 50_000 : 500_000;
  const topic = await benchTopic(s, 'throughput', 12);
  await fill(s, topic, jobs, 10_000);
  const raw1 = await rawConsume(s, topic, jobs);
  const strand = (await strandConsume(s, topic, jobs)).jobsPerSecond;
  const raw2 = await rawConsume(s, topic, jobs);
  const raw = (raw1 + raw2) / 2;
  const perf = await kafkaTool('ConsumerPerformance', [
    '--bootstrap-server',
    s.brokers.join(','),
    '--topic',
    topic,
    '--messages',
    String(jobs),
    '--group',
    `${topic}-perf`,
  ]).catch((e: Error) => `failed: ${e.message}`);
  const perfLine = perf.trim().split('\n').pop() ?? '';
  const perfRate = Number(perfLine.split(',')[5]);
  return {
    scenario: 'throughput',
    jobs,
    partitions: 12,
    strandJobsPerSecond: round(strand),
    rawKafkajsJobsPerSecond: round(raw),
    ratioToRaw: round(strand / raw, 3),
    kafkaConsumerPerformanceMsgsPerSecond: Number.isFinite(perfRate) ? round(perfRate) : perfLine,
    target: 'ratioToRaw >= 0.7',
    met: strand / raw >= 0.7,
  };
}

/** Scenario 2: Kafka's ProducerPerformance, next to bench/producer.ts's ratio. */
export async function producerPerformance(s: BenchStack, size: Size) {
  const records = size.quick ? 50_000 : 300_000;
  const topic = await benchTopic(s, 'producer-perf', 12);
  const out = await kafkaTool('ProducerPerformance', [
    '--topic',
    topic,
    '--num-records',
    String(records),
    '--record-size',
    '200',
    '--throughput',
    '-1',
    '--producer-props',
    `bootstrap.servers=${s.brokers.join(',')}`,
    'acks=all',
    'enable.idempotence=true',
  ]).catch((e: Error) => `failed: ${e.message}`);
  const m = /([\d.]+) records\/sec/.exec(out.trim().split('\n').pop() ?? '');
  return {
    scenario: 'producer-kafka-tool',
    records,
    recordSize: 200,
    kafkaProducerPerformanceRecordsPerSecond: m ? round(Number(m[1])) : out.slice(0, 200),
  };
}

/** Scenario 3: the Parallel Consumer's published table. */
export async function keyConcurrency(s: BenchStack, size: Size) {
  const jobs = size.quick ? 2000 : 10_000;
  const runs: { mode: string; keys: number | null; seconds: number }[] = [];
  const cases: { mode: 'partition' | 'key' | 'unordered'; keys: number }[] = [
    { mode: 'partition', keys: 100 },
    { mode: 'key', keys: 10 },
    { mode: 'key', keys: 100 },
    { mode: 'key', keys: 10_000 },
    { mode: 'unordered', keys: 100 },
  ];
  for (const c of cases) {
    const topic = await benchTopic(s, `keys-${c.mode}-${c.keys}`, 1);
    await fill(s, topic, jobs, c.keys);
    let done = 0;
    let first = 0;
    let last = 0;
    const w = worker(s, topic, {
      concurrency: 100,
      ordering: c.mode,
      maxBufferedJobs: 20_000,
      handler: async () => {
        if (!first) first = performance.now();
        await new Promise((r) => setTimeout(r, Math.random() * 5));
        done++;
        last = performance.now();
      },
    });
    await w.start();
    await until(() => done >= jobs, 300_000);
    await w.stop();
    runs.push({
      mode: c.mode,
      keys: c.mode === 'key' ? c.keys : null,
      seconds: round((last - first) / 1000, 2),
    });
  }
  const get = (mode: string, keys: number | null) =>
    runs.find((r) => r.mode === mode && r.keys === keys)!.seconds;
  const speedup = get('partition', null) / get('key', 100);
  const vsUnordered = get('key', 100) / get('unordered', null);
  return {
    scenario: 'key-concurrency',
    jobs,
    partitions: 1,
    concurrency: 100,
    handler: 'sleep uniform 0-5 ms',
    runs,
    published: { jobs: 10_000, partition: 22.2, key10: 3.3, key100: 2.18, key10000: 2.13, unordered: 2.83 },
    keyOrder100SpeedupOverPartition: round(speedup, 2),
    keyOrder100VsUnordered: round(vsUnordered, 3),
    target: 'speedup >= 8 and key100 within 25% of unordered',
    met: speedup >= 8 && vsUnordered <= 1.25,
  };
}

/** Scenario 4: latency at a steady 1,000 jobs/s. */
export async function latency(s: BenchStack, size: Size) {
  const seconds = size.quick ? 15 : 60;
  const rate = 1000;
  const topic = await benchTopic(s, 'latency', 6);
  const toStart: number[] = [];
  const toDone: number[] = [];
  const w = worker(s, topic, {
    concurrency: 64,
    handler: async (job) => {
      const enq = Number(job.headers[HEADERS.enqueuedAt]);
      toStart.push(Date.now() - enq);
      await new Promise((r) => setTimeout(r, 1));
      toDone.push(Date.now() - enq);
    },
  });
  await w.start();
  await new Promise((r) => setTimeout(r, 3000)); // joined
  const producer = await benchProducer(s, topic);
  const total = seconds * rate;
  const t0 = performance.now();
  let sent = 0;
  while (sent < total) {
    // 10 jobs every 10 ms: each tick's jobs go in one request, stamped when sent.
    const due = t0 + (sent / rate) * 1000;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    const batch = [];
    for (let i = 0; i < 10; i++, sent++)
      batch.push(producer.enqueue({ key: `acct-${sent % 1000}`, data: payment(sent, 1000) }));
    await Promise.all(batch);
  }
  const achieved = total / ((performance.now() - t0) / 1000);
  await until(() => toDone.length >= total, 60_000);
  await producer.disconnect();
  await w.stop();
  const pct = (xs: number[]) => ({
    p50: percentile(xs, 50),
    p95: percentile(xs, 95),
    p99: percentile(xs, 99),
  });
  const start = pct(toStart);
  return {
    scenario: 'latency',
    seconds,
    targetRate: rate,
    achievedRate: round(achieved),
    enqueueToStartMs: start,
    enqueueToCompletedMs: pct(toDone),
    target: 'p99 enqueue→start <= 50 ms',
    met: start.p99 <= 50,
  };
}

/** Scenario 5: peak RSS of a worker process over a small and a large backlog. */
export async function memory(s: BenchStack, size: Size) {
  const backlogs = size.quick ? [20_000, 200_000] : [100_000, 1_000_000];
  const results: { backlog: number; peakRssMiB: number; seconds: number }[] = [];
  for (const backlog of backlogs) {
    const topic = await benchTopic(s, `memory-${backlog}`, 12);
    await fill(s, topic, backlog, 10_000);
    const groupId = `${topic}-g`;
    const child = spawn(process.execPath, ['dist/cli/main.js', 'worker', 'bench/bench-worker.ts'], {
      env: {
        ...process.env,
        STRAND_BROKERS: s.brokers.join(','),
        STRAND_REGISTRY_URL: s.registryUrl,
        STRAND_LOG_LEVEL: 'error',
        STRAND_BENCH: JSON.stringify({ topic, groupId, sleepMs: 1 }),
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const admin = createKafka(s.conn).admin();
    await admin.connect();
    let peak = 0;
    const t0 = Date.now();
    for (;;) {
      peak = Math.max(peak, rssMiB(child.pid));
      const [res] = await admin.fetchOffsets({ groupId, topics: [topic] });
      const committed = (res?.partitions ?? []).reduce((sum, p) => sum + Math.max(0, Number(p.offset)), 0);
      if (committed >= backlog || Date.now() - t0 > 30 * 60_000) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    await admin.disconnect();
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    results.push({ backlog, peakRssMiB: round(peak), seconds: round((Date.now() - t0) / 1000, 1) });
  }
  const [a, b] = results as [(typeof results)[0], (typeof results)[0]];
  const spread = Math.abs(b.peakRssMiB - a.peakRssMiB) / Math.min(a.peakRssMiB, b.peakRssMiB);
  return {
    scenario: 'memory',
    handler: 'sleep 1 ms',
    results,
    spread: round(spread, 3),
    target: 'both < 300 MiB and within 20% of each other',
    met: a.peakRssMiB < 300 && b.peakRssMiB < 300 && spread <= 0.2,
  };
}

/** Scenario 6: how late retried jobs start after their due time (1 s tier). */
export async function retryDelay(s: BenchStack, size: Size) {
  const jobs = size.quick ? 300 : 2000;
  const topic = await benchTopic(s, 'retry-delay', 6, [1000]);
  await fill(s, topic, jobs, 500);
  const lateness: number[] = [];
  const w = worker(s, topic, {
    concurrency: 64,
    retry: { inPlace: 0, tiers: [1000], maxAttempts: 3 },
    handler: (job) => {
      if (job.attempt === 1) throw new Error('fail once');
      lateness.push(Date.now() - Number(job.headers[HEADERS.dueAt]));
    },
  });
  await w.start();
  await until(() => lateness.length >= jobs, 300_000);
  await w.stop();
  const p99 = percentile(lateness, 99);
  return {
    scenario: 'retry-delay',
    jobs,
    tier: '1s',
    startMinusDueMs: {
      p50: percentile(lateness, 50),
      p95: percentile(lateness, 95),
      p99,
      max: Math.max(...lateness),
    },
    target: 'p99 <= 250 ms',
    met: p99 <= 250,
  };
}

/** Scenario 7: 10% of jobs fail once; first-pass throughput relative to scenario 1's. */
export async function failureOverhead(s: BenchStack, size: Size, baselineJobsPerSecond: number | undefined) {
  const jobs = size.quick ? 50_000 : 500_000;
  const topic = await benchTopic(s, 'failures', 12, [1000]);
  await fill(s, topic, jobs, 10_000);
  let firstPass = 0;
  let first = 0;
  let last = 0;
  const w = worker(s, topic, {
    concurrency: 64,
    maxBufferedJobs: 5000,
    retry: { inPlace: 0, tiers: [1000], maxAttempts: 3 },
    handler: (job) => {
      if (!first) first = performance.now();
      if (job.attempt === 1) {
        firstPass++;
        last = performance.now();
        if (job.data.sequence % 10 === 0) throw new Error('transient');
      }
    },
  });
  await w.start();
  await until(() => firstPass >= jobs, 600_000);
  await w.stop();
  const rate = jobs / ((last - first) / 1000);
  return {
    scenario: 'failure-overhead',
    jobs,
    failingOnce: '10%',
    jobsPerSecond: round(rate),
    relativeToThroughputScenario: baselineJobsPerSecond ? round(rate / baselineJobsPerSecond, 3) : null,
  };
}
