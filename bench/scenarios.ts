/**
 * The benchmark scenarios. Every measured side runs in a process of its own with plain node
 * (bench/child.mjs; Strand from dist/), every figure is the median of `size.rounds` runs taken in
 * turn with the sides it is compared to (strand, fair, raw, strand, fair, raw, ...), with min and
 * max. A scenario throws when a run fails; partial failures (a reference tool) go to `errors`.
 */
import { spawn } from 'node:child_process';
import { rssMiB } from '../chaos/fleet.js';
import { createKafka } from '../src/kafka/client.js';
import {
  type BenchStack,
  benchTopic,
  type ChildResult,
  child,
  fill,
  kafkaTool,
  ROOT,
  round,
  type Stats,
  stats,
} from './lib.js';

export interface Size {
  quick: boolean;
  /** Interleaved runs of every side; each figure is their median. */
  rounds: number;
}

/** The default worker options for throughput: metrics on, key order, concurrency 64. */
export const STRAND_DEFAULTS = {
  concurrency: 64,
  ordering: 'key',
  metrics: { port: 0, host: '127.0.0.1' },
} as const;

const conn = (s: BenchStack) => ({ brokers: s.brokers, registryUrl: s.registryUrl });
let groupCounter = 0;
/** A new consumer group per run: every run reads the topic from the start. */
const group = (topic: string, side: string) => `${topic}-${side}-${groupCounter++}`;
const errorText = (e: unknown) => (e instanceof Error ? e.message : String(e));

/** One Strand worker run (bench/child.mjs `strand`) over `count` jobs of `topic`. */
export function strandRun(
  s: BenchStack,
  topic: string,
  count: number,
  handler:
    | 'noop'
    | 'noop-batch'
    | 'sleep5'
    | 'latency'
    | 'retry-due'
    | 'fail-10pct'
    | 'fail-1pct-keys'
    | 'delayed'
    | 'tenants',
  options: Record<string, unknown>,
  extra: { nodeArgs?: string[]; onReady?: () => void; timeoutMs?: number; otel?: boolean } = {},
): Promise<ChildResult> {
  return child(
    'strand',
    {
      ...conn(s),
      topic,
      groupId: group(topic, 'strand'),
      count,
      handler,
      options,
      ...(extra.timeoutMs ? { timeoutMs: extra.timeoutMs } : {}),
      ...(extra.otel ? { otel: true } : {}),
    },
    extra,
  );
}

/**
 * A kafkajs eachBatch loop (bench/child.mjs `kafkajsConsume`): `fast` is the reference (kafkajs'
 * default fetch sizes, decode without an await per record), `strand-fetch` the loop held to
 * Strand's fetch settings with an await per record (the earlier "fair" baseline), `raw` the latter
 * without decoding.
 */
type Loop = 'fast' | 'strand-fetch' | 'raw';
export const kafkajsRun = (s: BenchStack, topic: string, count: number, loop: Loop) =>
  child('kafkajs', {
    ...conn(s),
    topic,
    groupId: group(topic, loop),
    count,
    decode: loop !== 'raw',
    fast: loop === 'fast',
  });

const FAST_LOOP =
  "the fastest correct kafkajs loop: eachBatch with kafkajs' default fetch sizes (1 MiB per partition, 10 MiB per fetch, one partition at a time), the schema fetched once per id and every record Avro-decoded with avsc without an await, autocommit after every batch";
const STRAND_FETCH_LOOP =
  "the earlier 'fair' baseline: kafkajs eachBatch held to the worker's fetch settings (3 partitions at once, 512 KiB per partition, 4 MiB per fetch, 200 ms wait), an await per record for its schema, avsc decode, autocommit after every batch";

/**
 * Kafka's ConsumerPerformance, clocked from its first message: with --show-detailed-stats it
 * prints the time and the running message count every `--reporting-interval` ms, the first line at
 * the first record; the rate is taken between the first and the last line, so JVM start, the
 * group join and the tool's final idle poll are left out.
 */
async function consumerPerformance(s: BenchStack, topic: string, count: number): Promise<number> {
  const out = await kafkaTool('ConsumerPerformance', [
    '--bootstrap-server',
    s.brokers.join(','),
    '--topic',
    topic,
    '--messages',
    String(count),
    '--group',
    group(topic, 'perf'),
    '--show-detailed-stats',
    '--reporting-interval',
    '50',
    '--timeout',
    '30000',
  ]);
  if (/WARNING: Exiting before/.test(out)) throw new Error(out.trim().split('\n').pop());
  const points: { at: number; n: number }[] = [];
  const line = /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d):(\d{3}), \d+, [\d.]+, [\d.]+, (\d+),/;
  for (const l of out.split('\n')) {
    const m = line.exec(l.trim());
    if (!m) continue;
    const [y, mo, d, h, mi, sec, ms, n] = m.slice(1).map(Number) as number[];
    points.push({ at: Date.UTC(y!, mo! - 1, d!, h!, mi!, sec!, ms!), n: n! });
  }
  const a = points[0];
  const b = points[points.length - 1];
  if (!a || !b || b.at <= a.at) {
    throw new Error(`too few progress lines to time (${points.length}): ${out.slice(0, 300)}`);
  }
  return (b.n - a.n) / ((b.at - a.at) / 1000);
}

/** Scenario 1: no-op throughput vs the fast kafkajs loop, the loop at Strand's fetch sizes, raw kafkajs and ConsumerPerformance. */
export async function throughput(s: BenchStack, size: Size) {
  const jobs = size.quick ? 30_000 : 200_000;
  const partitions = 12;
  const keys = 1000;
  const topic = await benchTopic(s, 'throughput', partitions);
  await fill(s, topic, jobs, keys);
  const runs = {
    strand: [] as number[],
    fast: [] as number[],
    fair: [] as number[],
    raw: [] as number[],
    perf: [] as number[],
  };
  const strandRss: number[] = [];
  const ratios: number[] = [];
  const fastRatios: number[] = [];
  const errors: string[] = [];
  for (let r = 0; r < size.rounds; r++) {
    const strand = await strandRun(s, topic, jobs, 'noop', STRAND_DEFAULTS);
    const fast = await kafkajsRun(s, topic, jobs, 'fast');
    const fair = await kafkajsRun(s, topic, jobs, 'strand-fetch');
    const raw = await kafkajsRun(s, topic, jobs, 'raw');
    runs.strand.push(Number(strand.jobsPerSecond));
    runs.fast.push(Number(fast.jobsPerSecond));
    runs.fair.push(Number(fair.jobsPerSecond));
    runs.raw.push(Number(raw.jobsPerSecond));
    strandRss.push(Number(strand.maxRssMiB));
    ratios.push(Number(strand.jobsPerSecond) / Number(fair.jobsPerSecond));
    fastRatios.push(Number(strand.jobsPerSecond) / Number(fast.jobsPerSecond));
    try {
      runs.perf.push(await consumerPerformance(s, topic, jobs));
    } catch (e) {
      errors.push(`ConsumerPerformance: ${errorText(e)}`);
    }
  }
  const strand = stats(runs.strand);
  const fast = stats(runs.fast);
  const fair = stats(runs.fair);
  const raw = stats(runs.raw);
  const ratio = strand.median / fair.median;
  const ratioFast = strand.median / fast.median;
  return {
    scenario: 'throughput',
    jobs,
    partitions,
    keys,
    rounds: size.rounds,
    order:
      'each round: strand, fast kafkajs loop, kafkajs at Strand fetch sizes, raw kafkajs, ConsumerPerformance; a new group each run',
    strand: { from: 'dist/', handler: 'no-op', options: { ...STRAND_DEFAULTS, maxBufferedJobs: 'default' } },
    baselines: {
      fastKafkajs: FAST_LOOP,
      kafkajsAtStrandFetch: STRAND_FETCH_LOOP,
      rawKafkajs: 'the Strand-fetch loop without decoding',
      kafkaConsumerPerformance: 'Kafka ConsumerPerformance (Java), clocked from its first message',
    },
    jobsPerSecond: {
      strand,
      fastKafkajs: fast,
      kafkajsAtStrandFetch: fair,
      rawKafkajs: raw,
      kafkaConsumerPerformance: runs.perf.length ? stats(runs.perf) : null,
    },
    strandPeakRssMiB: stats(strandRss),
    ratioToFast: round(ratioFast, 3),
    ratioToFastPerRound: stats(fastRatios, 3),
    ratioToStrandFetch: round(ratio, 3),
    ratioToStrandFetchPerRound: stats(ratios, 3),
    ratioToRaw: round(strand.median / raw.median, 3),
    target: 'ratioToFast >= 0.4 (aim 0.5), issue 31',
    met: ratioFast >= 0.4,
    aimMet: ratioFast >= 0.5,
    ...(errors.length ? { errors } : {}),
  };
}

/** The batch scenario's worker: the throughput defaults with a no-op batch handler, batches of up to 500. */
export const STRAND_BATCH = { ...STRAND_DEFAULTS, batch: { maxSize: 500, maxWaitMs: 20 } } as const;

/**
 * Batch handlers: a no-op batch worker (maxSize 500) against the fast kafkajs loop of the
 * throughput scenario (eachBatch + Avro decode + commit) on the same topic, interleaved, with the
 * single-job no-op worker alongside.
 */
export async function batch(s: BenchStack, size: Size) {
  const jobs = size.quick ? 30_000 : 200_000;
  const partitions = 12;
  const keys = 1000;
  const topic = await benchTopic(s, 'batch', partitions);
  await fill(s, topic, jobs, keys);
  const runs = { batch: [] as number[], single: [] as number[], fast: [] as number[] };
  const ratios: number[] = [];
  for (let r = 0; r < size.rounds; r++) {
    const b = await strandRun(s, topic, jobs, 'noop-batch', STRAND_BATCH);
    const fast = await kafkajsRun(s, topic, jobs, 'fast');
    const single = await strandRun(s, topic, jobs, 'noop', STRAND_DEFAULTS);
    runs.batch.push(Number(b.jobsPerSecond));
    runs.fast.push(Number(fast.jobsPerSecond));
    runs.single.push(Number(single.jobsPerSecond));
    ratios.push(Number(b.jobsPerSecond) / Number(fast.jobsPerSecond));
  }
  const b = stats(runs.batch);
  const fast = stats(runs.fast);
  const single = stats(runs.single);
  const ratio = b.median / fast.median;
  return {
    scenario: 'batch',
    jobs,
    partitions,
    keys,
    rounds: size.rounds,
    order: 'each round: strand batch, fast kafkajs loop, strand single; a new group each run',
    strand: { from: 'dist/', handler: 'no-op batchHandler', options: STRAND_BATCH },
    baselines: { fastKafkajs: FAST_LOOP },
    jobsPerSecond: { strandBatch: b, fastKafkajs: fast, strandSingle: single },
    ratioToFast: round(ratio, 3),
    ratioToFastPerRound: stats(ratios, 3),
    batchOverSingle: round(b.median / single.median, 3),
    target: 'ratioToFast >= 0.7 (issue 31)',
    met: ratio >= 0.7,
  };
}

/** Kafka's ProducerPerformance with 200-byte records, idempotent, acks=all. */
async function producerPerformance(s: BenchStack, topic: string, records: number): Promise<number> {
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
  ]);
  const m = /([\d.]+) records\/sec/.exec(out.trim().split('\n').pop() ?? '');
  if (!m) throw new Error(`no result line: ${out.slice(-300)}`);
  return Number(m[1]);
}

/** Scenario 2: enqueueMany vs a raw kafkajs producer Avro-encoding the same records. */
export async function producer(s: BenchStack, size: Size) {
  const jobs = size.quick ? 20_000 : 200_000;
  const batch = 1000;
  const topics = {
    strand: await benchTopic(s, 'produce-strand', 12),
    raw: await benchTopic(s, 'produce-raw', 12),
    tool: await benchTopic(s, 'produce-tool', 12),
  };
  const runs = { strand: [] as number[], raw: [] as number[], tool: [] as number[] };
  const ratios: number[] = [];
  const errors: string[] = [];
  for (let r = 0; r < size.rounds; r++) {
    const strand = await child('produce', { ...conn(s), side: 'strand', topic: topics.strand, jobs, batch });
    const raw = await child('produce', { ...conn(s), side: 'raw', topic: topics.raw, jobs, batch });
    runs.strand.push(Number(strand.jobsPerSecond));
    runs.raw.push(Number(raw.jobsPerSecond));
    ratios.push(Number(strand.jobsPerSecond) / Number(raw.jobsPerSecond));
    try {
      runs.tool.push(await producerPerformance(s, topics.tool, jobs));
    } catch (e) {
      errors.push(`ProducerPerformance: ${errorText(e)}`);
    }
  }
  const strand = stats(runs.strand);
  const raw = stats(runs.raw);
  const ratio = strand.median / raw.median;
  return {
    scenario: 'producer',
    jobs,
    batch,
    partitions: 12,
    rounds: size.rounds,
    order: 'each round: strand, raw kafkajs, ProducerPerformance; one warm-up batch per run, untimed',
    strand: { from: 'dist/', call: 'JobProducer.enqueueMany' },
    baselines: {
      rawKafkajs:
        'kafkajs idempotent producer, acks=all: avsc encode + Confluent wire header per record, job-id and enqueued-at headers',
      kafkaProducerPerformance: 'Kafka ProducerPerformance (Java), 200-byte records, idempotent, acks=all',
    },
    jobsPerSecond: {
      strand,
      rawKafkajs: raw,
      kafkaProducerPerformance: runs.tool.length ? stats(runs.tool) : null,
    },
    ratio: round(ratio, 3),
    ratioPerRound: stats(ratios, 3),
    target: 'ratio >= 0.9',
    met: ratio >= 0.9,
    ...(errors.length ? { errors } : {}),
  };
}

/** Scenario 3: the Parallel Consumer's published table; key order vs unordered on the same topic. */
export async function keyConcurrency(s: BenchStack, size: Size) {
  const jobs = size.quick ? 4000 : 10_000;
  const topics = new Map<number, string>();
  for (const keys of [10, 100, 10_000]) {
    const topic = await benchTopic(s, `keys-${keys}`, 1);
    await fill(s, topic, jobs, keys);
    topics.set(keys, topic);
  }
  // partition, key 100 and unordered read the same 100-key topic.
  const cases: { mode: 'partition' | 'key' | 'unordered'; keys: number }[] = [
    { mode: 'partition', keys: 100 },
    { mode: 'key', keys: 10 },
    { mode: 'key', keys: 100 },
    { mode: 'key', keys: 10_000 },
    { mode: 'unordered', keys: 100 },
  ];
  const seconds = cases.map(() => [] as number[]);
  for (let r = 0; r < size.rounds; r++) {
    for (const [i, c] of cases.entries()) {
      const res = await strandRun(s, topics.get(c.keys)!, jobs, 'sleep5', {
        ...STRAND_DEFAULTS,
        concurrency: 100,
        ordering: c.mode,
        maxBufferedJobs: 20_000,
      });
      seconds[i]!.push(res.seconds);
    }
  }
  const runs = cases.map((c, i) => ({
    mode: c.mode,
    keys: c.mode === 'key' ? c.keys : null,
    topicKeys: c.keys,
    seconds: stats(seconds[i]!, 2),
  }));
  const get = (mode: string, keys: number | null) =>
    runs.find((r) => r.mode === mode && r.keys === keys)!.seconds.median;
  // Throughput ratio: the same jobs in less time is more throughput.
  const vsUnordered = get('unordered', null) / get('key', 100);
  return {
    scenario: 'key-concurrency',
    jobs,
    partitions: 1,
    concurrency: 100,
    handler: 'sleep uniform 0-5 ms',
    rounds: size.rounds,
    runs,
    published: { jobs: 10_000, partition: 22.2, key10: 3.3, key100: 2.18, key10000: 2.13, unordered: 2.83 },
    keyOrder100SpeedupOverPartition: round(get('partition', null) / get('key', 100), 2),
    keyOrder100VsUnordered: round(vsUnordered, 3),
    target: 'keyOrder100VsUnordered (throughput, same topic) >= 0.9',
    met: vsUnordered >= 0.9,
  };
}

/** Scenario 4: enqueue→start latency at steady 1,000 and 5,000 jobs/s (producer in its own process). */
export async function latency(s: BenchStack, size: Size) {
  const seconds = size.quick ? 8 : 30;
  const rates = [1000, 5000];
  const per = new Map(
    rates.map((rate) => [
      rate,
      {
        achieved: [] as number[],
        start: { p50: [] as number[], p95: [] as number[], p99: [] as number[] },
        done: { p50: [] as number[], p95: [] as number[], p99: [] as number[] },
        worstSeconds: [] as unknown[],
      },
    ]),
  );
  for (let r = 0; r < size.rounds; r++) {
    for (const rate of rates) {
      const topic = await benchTopic(s, `latency-${rate}`, 6);
      const total = seconds * rate;
      let paced: Promise<ChildResult> | undefined;
      let producerFailed: (e: unknown) => void = () => undefined;
      const failed = new Promise<never>((_, reject) => {
        producerFailed = reject;
      });
      failed.catch(() => undefined); // settled after the worker's result: nobody waits any more
      const worker = strandRun(s, topic, total, 'latency', STRAND_DEFAULTS, {
        timeoutMs: seconds * 1000 + 120_000,
        onReady: () => {
          paced ??= child('paced', { ...conn(s), topic, rate, seconds, keys: 1000 });
          paced.catch(producerFailed);
        },
      });
      const w = await Promise.race([worker, failed]);
      const p = await paced!;
      const m = per.get(rate)!;
      m.achieved.push(Number(p.achievedRate));
      const start = w.enqueueToStartMs as Record<'p50' | 'p95' | 'p99', number>;
      const done = w.enqueueToCompletedMs as Record<'p50' | 'p95' | 'p99', number>;
      m.worstSeconds.push(w.worstSeconds);
      for (const q of ['p50', 'p95', 'p99'] as const) {
        m.start[q].push(start[q]);
        m.done[q].push(done[q]);
      }
    }
  }
  const results = rates.map((rate) => {
    const m = per.get(rate)!;
    return {
      targetRate: rate,
      achievedRate: stats(m.achieved),
      enqueueToStartMs: { p50: stats(m.start.p50), p95: stats(m.start.p95), p99: stats(m.start.p99) },
      enqueueToCompletedMs: { p50: stats(m.done.p50), p95: stats(m.done.p95), p99: stats(m.done.p99) },
      // Per round: the seconds of the run with the slowest starts (where the tail comes from).
      worstSeconds: m.worstSeconds,
    };
  });
  const p99 = Object.fromEntries(results.map((x) => [x.targetRate, x.enqueueToStartMs.p99.median]));
  return {
    scenario: 'latency',
    seconds,
    rounds: size.rounds,
    handler: 'sleep 1 ms',
    strand: { from: 'dist/', options: STRAND_DEFAULTS, keys: 1000, partitions: 6 },
    producer: 'JobProducer in its own process, rate/100 jobs per enqueueMany every 10 ms',
    results,
    p99EnqueueToStartMs: p99,
    target: 'p99 enqueue→start <= 50 ms at 1,000 and at 5,000 jobs/s',
    met: Object.values(p99).every((v) => v <= 50),
  };
}

/** One CLI worker process (dist/cli/main.js, bench/bench-worker.mjs) over a backlog; its peak RSS. */
async function memoryRun(s: BenchStack, topic: string, backlog: number) {
  const groupId = `${topic}-g${groupCounter++}`;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    STRAND_BROKERS: s.brokers.join(','),
    STRAND_REGISTRY_URL: s.registryUrl,
    STRAND_LOG_LEVEL: 'error',
    STRAND_BENCH: JSON.stringify({ topic, groupId, sleepMs: 1 }),
  };
  delete env.NODE_OPTIONS;
  const proc = spawn(process.execPath, ['dist/cli/main.js', 'worker', 'bench/bench-worker.mjs'], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', resolve));
  let exitCode: number | null | undefined;
  void exited.then((c) => {
    exitCode = c;
  });
  const admin = createKafka(s.conn).admin();
  await admin.connect();
  let peak = 0;
  const t0 = Date.now();
  try {
    for (;;) {
      if (exitCode !== undefined) throw new Error(`memory worker exited early (${exitCode})`);
      peak = Math.max(peak, rssMiB(proc.pid));
      const [res] = await admin.fetchOffsets({ groupId, topics: [topic] });
      const committed = (res?.partitions ?? []).reduce((sum, p) => sum + Math.max(0, Number(p.offset)), 0);
      if (committed >= backlog) break;
      if (Date.now() - t0 > 30 * 60_000)
        throw new Error(`memory worker committed ${committed} of ${backlog}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  } finally {
    await admin.disconnect();
    if (exitCode === undefined) proc.kill('SIGTERM');
    await exited;
  }
  return { peak, seconds: (Date.now() - t0) / 1000 };
}

/** Scenario 5: peak RSS of a worker process over a small and a 10× larger backlog. */
export async function memory(s: BenchStack, size: Size) {
  const backlogs = size.quick ? [20_000, 200_000] : [100_000, 1_000_000];
  const topics: string[] = [];
  for (const backlog of backlogs) {
    const topic = await benchTopic(s, `memory-${backlog}`, 12);
    await fill(s, topic, backlog, 10_000);
    topics.push(topic);
  }
  const peaks = backlogs.map(() => [] as number[]);
  const secs = backlogs.map(() => [] as number[]);
  for (let r = 0; r < size.rounds; r++) {
    for (const [i, backlog] of backlogs.entries()) {
      const run = await memoryRun(s, topics[i]!, backlog);
      peaks[i]!.push(run.peak);
      secs[i]!.push(run.seconds);
    }
  }
  const results = backlogs.map((backlog, i) => ({
    backlog,
    peakRssMiB: stats(peaks[i]!),
    seconds: stats(secs[i]!, 1),
  }));
  const [small, large] = results as [(typeof results)[0], (typeof results)[0]];
  const ratio = large.peakRssMiB.median / small.peakRssMiB.median;
  return {
    scenario: 'memory',
    handler: 'sleep 1 ms',
    worker: 'strand worker (dist/cli/main.js) bench/bench-worker.mjs, concurrency 16, default buffers',
    rounds: size.rounds,
    results,
    largeToSmallRss: round(ratio, 3),
    target: `peak RSS at ${large.backlog} backlog <= 1.2 × at ${small.backlog}`,
    met: ratio <= 1.2,
  };
}

/** Scenario 6: how late retried jobs start after their due time (1 s tier); a fresh topic per run. */
export async function retryDelay(s: BenchStack, size: Size) {
  const jobs = size.quick ? 300 : 2000;
  const q = { p50: [] as number[], p95: [] as number[], p99: [] as number[], max: [] as number[] };
  for (let r = 0; r < size.rounds; r++) {
    // A tier topic is shared by every group of its job topic: each run gets its own.
    const topic = await benchTopic(s, 'retry-delay', 6, [1000]);
    await fill(s, topic, jobs, 500);
    // Every job fails once: relaxed, so each waits in the tier for itself, not behind its key.
    const res = await strandRun(s, topic, jobs, 'retry-due', {
      ...STRAND_DEFAULTS,
      retry: { inPlace: 0, tiers: [1000], maxAttempts: 3, ordering: 'relaxed' },
    });
    const late = res.startMinusDueMs as Record<keyof typeof q, number>;
    for (const k of Object.keys(q) as (keyof typeof q)[]) q[k].push(late[k]);
  }
  const p99 = stats(q.p99);
  return {
    scenario: 'retry-delay',
    jobs,
    tier: '1s',
    rounds: size.rounds,
    startMinusDueMs: { p50: stats(q.p50), p95: stats(q.p95), p99, max: stats(q.max) },
    target: 'p99 <= 250 ms',
    met: p99.median <= 250,
  };
}

/** Scenario 7: 10% of jobs fail once; first-pass throughput next to no failures on the same topic. */
export async function failureOverhead(s: BenchStack, size: Size) {
  const jobs = size.quick ? 30_000 : 200_000;
  // Relaxed: what failure routing costs; strict key order's cost is scenario strict-order's.
  const options = {
    ...STRAND_DEFAULTS,
    retry: { inPlace: 0, tiers: [1000], maxAttempts: 3, ordering: 'relaxed' },
  };
  const clean: number[] = [];
  const failing: number[] = [];
  for (let r = 0; r < size.rounds; r++) {
    // The failing run leaves retries in the tier topic: a fresh topic per round, the clean run first.
    const topic = await benchTopic(s, 'failures', 12, [1000]);
    await fill(s, topic, jobs, 1000);
    clean.push(Number((await strandRun(s, topic, jobs, 'noop', options)).jobsPerSecond));
    failing.push(Number((await strandRun(s, topic, jobs, 'fail-10pct', options)).jobsPerSecond));
  }
  const a: Stats = stats(clean);
  const b: Stats = stats(failing);
  return {
    scenario: 'failure-overhead',
    jobs,
    rounds: size.rounds,
    failingOnce: '10%',
    jobsPerSecond: { noFailures: a, tenPercentFailOnce: b },
    firstPassRelativeToNoFailures: round(b.median / a.median, 3),
  };
}

/**
 * Scenario 8: strict key order's cost to keys that do not fail. 1,000 keys on 12 partitions; every
 * 100th key (1%) fails one job once (into a 1 s tier), which parks that key under `strict`; the
 * figure is the throughput of the other 99% of keys' jobs (no-op handler), strict next to relaxed
 * on one topic per round, interleaved.
 */
export async function strictOrder(s: BenchStack, size: Size) {
  const jobs = size.quick ? 30_000 : 200_000;
  const keys = 1000;
  const counted = jobs - Math.ceil(jobs / keys) * (keys / 100);
  const sides = { strict: [] as number[], relaxed: [] as number[] };
  for (let r = 0; r < size.rounds; r++) {
    const topic = await benchTopic(s, 'strict-order', 12, [1000]);
    await fill(s, topic, jobs, keys);
    const order = r % 2 === 0 ? (['strict', 'relaxed'] as const) : (['relaxed', 'strict'] as const);
    for (const ordering of order) {
      const res = await strandRun(s, topic, counted, 'fail-1pct-keys', {
        ...STRAND_DEFAULTS,
        retry: { inPlace: 0, tiers: [1000], maxAttempts: 3, ordering },
      });
      sides[ordering].push(Number(res.jobsPerSecond));
    }
  }
  const strict = stats(sides.strict);
  const relaxed = stats(sides.relaxed);
  const ratio = strict.median / relaxed.median;
  return {
    scenario: 'strict-order',
    jobs,
    keys,
    partitions: 12,
    failingKeys: '1% (each fails one job once, 1 s tier)',
    counted: `${counted} jobs of the keys that never fail`,
    rounds: size.rounds,
    jobsPerSecond: { strict, relaxed },
    strictVsRelaxed: round(ratio, 3),
    target: 'non-failing keys under strict >= 0.9 x relaxed (same run, same topic)',
    met: ratio >= 0.9,
  };
}
