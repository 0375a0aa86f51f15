import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { restartStackProcess, stackDown, stackUp, stopStackProcess } from '../src/devstack/index.js';
import { type Admin, createKafka } from '../src/kafka/client.js';
import { createJobTopics } from '../src/kafka/topics.js';
import { dlqDepth } from '../src/lag/lag.js';
import { createLogger } from '../src/observability/logger.js';
import { JobProducer } from '../src/producer/job-producer.js';
import { TcpProxy } from '../test/support/proxy.js';
import {
  ChaosFleet,
  errorLogLines,
  keyOrderViolations,
  openFds,
  rssMiB,
  strictStartViolations,
  watchCommits,
} from './fleet.js';
import {
  enqueuePaymentBacklog,
  type Payment,
  PaymentFeed,
  payment,
  paymentProducer,
  paymentSchema,
} from './payments.js';

export interface ChaosStack {
  brokers: string[];
  registryUrl: string;
}

export interface Verdict {
  scenario: string;
  passed: boolean;
  figures: Record<string, unknown>;
  failures: string[];
}

const quiet = createLogger({ level: 'silent' });

/**
 * A scenario's topic name: `chaos-<kind>-<time>`, with the run's tag when `STRAND_CHAOS_TAG` is set
 * (the reduced runs inside `npm test` set it, so the test file deletes everything made from it).
 */
export function chaosTopicName(kind: string): string {
  const tag = process.env.STRAND_CHAOS_TAG;
  return `chaos-${kind}-${tag ? `${tag}-` : ''}${Date.now().toString(36)}`;
}
/** The Redis of the idempotency store and the side-effect lists (the test harness may pick its port). */
const redisPort = () => Number(process.env.STRAND_TEST_REDIS_PORT ?? 6379);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function newTopic(
  s: ChaosStack,
  name: string,
  partitions: number,
  tierDelays: number[] = [],
): Promise<string> {
  const topic = chaosTopicName(name);
  await createJobTopics({ brokers: s.brokers }, { topic, partitions, tierDelays });
  return topic;
}

/**
 * Enqueues at a steady `rate` (a batch every 50 ms) until `jobs` are acknowledged; `pick` chooses
 * the producer of each batch. Only acknowledged jobs are promises the ledger must keep.
 */
export function steadyProducer(
  pick: () => JobProducer<Payment> | { producer: JobProducer<Payment>; keyPrefix: string },
  o: { rate: number; jobs: number; keys: number },
) {
  const acknowledged: string[] = [];
  const where = new Map<string, string>();
  const via = new Map<string, JobProducer<Payment>>();
  let failures = 0;
  let producing = true;
  const seqs = new Map<string, number>();
  const loop = (async () => {
    let i = 0;
    while (producing && acknowledged.length < o.jobs) {
      const picked = pick();
      const [p, prefix] = picked instanceof JobProducer ? [picked, ''] : [picked.producer, picked.keyPrefix];
      const batch = Array.from({ length: Math.max(1, Math.round(o.rate / 20)) }, () => {
        const job = payment(i++, o.keys, seqs);
        job.key = `${prefix}${job.key}`;
        job.data.accountId = job.key;
        return job;
      });
      const tick = Date.now();
      try {
        for (const r of await p.enqueueMany(batch)) {
          acknowledged.push(r.jobId);
          where.set(r.jobId, `${r.partition}/${r.offset}`);
          via.set(r.jobId, p);
        }
      } catch {
        failures++; // not acknowledged: not a promise
      }
      await sleep(Math.max(0, 50 - (Date.now() - tick)));
    }
  })();
  return {
    acknowledged,
    where,
    via,
    get failures() {
      return failures;
    },
    /** Waits until every job is acknowledged (at most `waitMs`), then stops. */
    async finish(waitMs: number): Promise<void> {
      const by = Date.now() + waitMs;
      while (acknowledged.length < o.jobs && Date.now() < by) await sleep(200);
      producing = false;
      await loop;
    },
  };
}

/** Ledger-worker settings of the steady-rate scenarios: short handlers, the Redis idempotency store. */
function steadyWorkers(topic: string) {
  return {
    topic,
    groupId: `${topic}-g`,
    concurrency: 8,
    minMs: 1,
    maxMs: 3,
    redisPrefix: `${topic}:idem:`,
    leaseMs: 5000,
  };
}

/**
 * Worker crashes: `workers` processes with the Redis idempotency store; SIGKILL a random one every
 * 3–5 s and restart it, `kills` times. Verdict: no job lost, per-key first completions in enqueue
 * order, no duplicate side effect (duplicate deliveries are reported).
 */
export async function crashScenario(
  s: ChaosStack,
  o: {
    jobs: number;
    keys: number;
    workers: number;
    kills: number;
    concurrency?: number;
    handlerMs?: [number, number];
    killEveryMs?: [number, number];
    /** How long to wait for every job after the kills. @defaultValue 5 minutes */
    waitMs?: number;
  },
): Promise<Verdict> {
  const topic = await newTopic(s, 'crash', 6);
  const list = `${topic}:effects`;
  await enqueuePaymentBacklog(s, topic, o.jobs, o.keys);
  const fleet = new ChaosFleet(s, {
    topic,
    groupId: `${topic}-g`,
    concurrency: o.concurrency ?? 16,
    minMs: o.handlerMs?.[0] ?? 1,
    maxMs: o.handlerMs?.[1] ?? 4,
    redisPrefix: `${topic}:idem:`,
    leaseMs: 3000,
    sideEffectList: list,
    sessionTimeoutMs: 6000,
  });
  const t0 = Date.now();
  for (let i = 0; i < o.workers; i++) fleet.start();
  const completed = () => completions(fleet).size;
  let kills = 0;
  const killedAt = new Map<string, number>();
  while (kills < o.kills && completed() < o.jobs) {
    const [lo, hi] = o.killEveryMs ?? [3000, 5000];
    await sleep(lo + Math.random() * (hi - lo));
    const alive = fleet.alive;
    const victim = alive[Math.floor(Math.random() * alive.length)];
    if (!victim) break;
    killedAt.set(String(victim.pid), Date.now());
    await fleet.kill(victim, 'SIGKILL');
    kills++;
    fleet.start();
  }
  // Kills not made because every job had completed before the next one was due.
  const killsSkipped = completed() >= o.jobs ? o.kills - kills : 0;
  const deadline = Date.now() + (o.waitMs ?? 5 * 60_000);
  while (completed() < o.jobs && Date.now() < deadline) await sleep(500);
  const seconds = (Date.now() - t0) / 1000;
  await fleet.killAll();
  const redis = new Redis({ host: '127.0.0.1', port: redisPort() });
  const effects = await redis.lrange(list, 0, -1);
  await redis.del(list);
  await redis.quit();
  const lines = fleet.read();
  const counts = new Map<string, number>();
  for (const id of effects) counts.set(id, (counts.get(id) ?? 0) + 1);
  const starts = lines.filter((l) => l.kind === 'S').length;
  // A duplicate side effect is the documented gap when the first run's process was SIGKILLed after
  // the side effect and before the done marker was written: the first run's process was killed
  // after that run started (and at most 1 s after it logged completion, if it did), and every later
  // run started after the kill — never two runs at once. A loaded machine can delay the marker
  // write by tens of milliseconds, so the bound is generous; a store that never wrote markers
  // would duplicate far more jobs than the kills could explain.
  const duplicated = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
  const inCrashWindow = duplicated.filter((id) => {
    const runs = lines.filter((l) => l.jobId === id).sort((a, b) => a.at - b.at);
    const first = runs.find((l) => l.kind === 'S');
    const killed = first ? killedAt.get(first.pid) : undefined;
    if (!first || killed === undefined || killed < first.at) return false;
    const firstDone = runs.find((l) => l.kind === 'C' && l.pid === first.pid);
    if (firstDone && killed - firstDone.at > 1000) return false;
    return runs.filter((l) => l.kind === 'S' && l !== first).every((l) => l.at >= killed);
  }).length;
  const figures = {
    jobs: o.jobs,
    keys: o.keys,
    workers: o.workers,
    concurrencyPerWorker: o.concurrency ?? 16,
    kills,
    killsSkippedAllDone: killsSkipped,
    completed: completed(),
    lost: o.jobs - completed(),
    handlerStarts: starts,
    duplicateDeliveries: starts - new Set(lines.filter((l) => l.kind === 'S').map((l) => l.jobId)).size,
    sideEffects: effects.length,
    duplicateSideEffects: duplicated.length,
    duplicateSideEffectsInCrashWindow: inCrashWindow,
    orderViolations: keyOrderViolations(lines).length,
    seconds: Math.round(seconds),
  };
  const failures: string[] = [];
  if (figures.lost !== 0) failures.push(`${figures.lost} jobs lost`);
  if (duplicated.length !== inCrashWindow) {
    failures.push(
      `${duplicated.length - inCrashWindow} duplicate side effects outside the crash-after-effect window`,
    );
  }
  if (counts.size !== o.jobs) failures.push(`${counts.size} distinct side effects for ${o.jobs} jobs`);
  if (figures.orderViolations !== 0) failures.push(`${figures.orderViolations} keys completed out of order`);
  if (kills < Math.min(o.kills, 1)) failures.push('no worker was killed');
  return { scenario: 'crash', passed: failures.length === 0, figures, failures };
}

/**
 * Strict key order under crashes and rebalances: `retry.ordering: 'strict'`, tiers of 1 s and 2 s,
 * no in-place retries. Every 10th key fails one job in 15 (once, or twice) so keys are parked
 * behind jobs in retry tiers all the time; `workers` processes, SIGKILL a random one every 3–5 s
 * and restart it, `kills` times; a fourth worker joins midway and leaves by SIGTERM (two more
 * rebalances). Verdict: no job lost; per key, no attempt of a job starts before every earlier job
 * of the key first completed (`strictStartViolations`), and completed runs never overlap
 * (`keyOrderViolations`); jobs actually parked (the workers' `job:parked` count is not visible
 * here, so parking is shown by failing jobs' keys waiting: at least one later job of a failing key
 * started after its failed job's retry completed).
 */
export async function strictOrderScenario(
  s: ChaosStack,
  o: {
    jobs: number;
    keys: number;
    workers: number;
    kills: number;
    waitMs?: number;
    /** `relaxed` shows what the checks catch without parking. @defaultValue 'strict' */
    ordering?: 'strict' | 'relaxed';
  },
): Promise<Verdict> {
  const topic = await newTopic(s, 'strict', 6, [1000, 2000]);
  const failing = (i: number) => (i % o.keys) % 10 === 0 && Math.floor(i / o.keys) % 15 === 3;
  await enqueuePaymentBacklog(s, topic, o.jobs, o.keys, {
    memo: (i) => (failing(i) ? (i % 20 === 0 ? 'fail-times-2' : 'fail-times-1') : null),
  });
  const fleet = new ChaosFleet(s, {
    topic,
    groupId: `${topic}-g`,
    concurrency: 4,
    minMs: 2,
    maxMs: 8,
    tiers: [1000, 2000],
    inPlace: 0,
    maxAttempts: 5,
    retryOrdering: o.ordering ?? 'strict',
    sessionTimeoutMs: 6000,
  });
  const t0 = Date.now();
  for (let i = 0; i < o.workers; i++) fleet.start();
  const completed = () => completions(fleet).size;
  let kills = 0;
  let joiner: ReturnType<ChaosFleet['start']> | undefined;
  while (kills < o.kills && completed() < o.jobs) {
    await sleep(3000 + Math.random() * 2000);
    if (kills === Math.floor(o.kills / 2) && !joiner) joiner = fleet.start();
    const alive = fleet.alive.filter((c) => c !== joiner);
    const victim = alive[Math.floor(Math.random() * alive.length)];
    if (!victim) break;
    await fleet.kill(victim, 'SIGKILL');
    kills++;
    fleet.start();
  }
  if (joiner) await fleet.kill(joiner, 'SIGTERM');
  const deadline = Date.now() + (o.waitMs ?? 5 * 60_000);
  while (completed() < o.jobs && Date.now() < deadline) await sleep(500);
  const seconds = (Date.now() - t0) / 1000;
  await fleet.killAll();
  const lines = fleet.read();
  const starts = lines.filter((l) => l.kind === 'S');
  const failedAttempts = starts.length - lines.filter((l) => l.kind === 'C').length;
  const failingJobs = new Set(starts.filter((l) => l.attempt > 1).map((l) => l.jobId));
  const figures = {
    jobs: o.jobs,
    keys: o.keys,
    workers: o.workers,
    kills,
    joinerLeft: joiner !== undefined,
    completed: completed(),
    lost: o.jobs - completed(),
    retriedJobs: failingJobs.size,
    handlerStarts: starts.length,
    startsWithoutCompletion: failedAttempts,
    orderViolations: keyOrderViolations(lines).length,
    strictStartViolations: strictStartViolations(lines).length,
    seconds: Math.round(seconds),
  };
  const failures: string[] = [];
  if (figures.lost !== 0) failures.push(`${figures.lost} jobs lost`);
  if (figures.orderViolations !== 0) failures.push(`${figures.orderViolations} keys completed out of order`);
  const strict = strictStartViolations(lines);
  if (strict.length !== 0)
    failures.push(`${strict.length} keys started a job early: ${strict.slice(0, 3).join('; ')}`);
  if (failingJobs.size === 0) failures.push('no job went through a retry tier');
  if (kills < Math.min(o.kills, 1)) failures.push('no worker was killed');
  return { scenario: 'strict-order', passed: failures.length === 0, figures, failures };
}

type BadKind =
  | 'random-bytes'
  | 'bad-magic'
  | 'unknown-schema-id'
  | 'truncated'
  | 'large-value'
  | 'empty-value'
  | 'null-value';
const EXPECTED_REASON: Record<BadKind, string> = {
  'random-bytes': 'bad-magic',
  'bad-magic': 'bad-magic',
  'unknown-schema-id': 'unknown-schema-id',
  truncated: 'truncated',
  'large-value': 'bad-magic',
  'empty-value': 'truncated',
  'null-value': 'truncated',
};

/**
 * Bad input at volume: `bad` corrupt or hostile records interleaved with `valid` jobs (some with
 * no key or malformed headers, which must still run). Verdict: every bad record in the DLQ with
 * the right reason, every valid job completed in key order, worker RSS bounded.
 */
export async function badInputScenario(
  s: ChaosStack,
  o: { valid: number; bad: number; keys: number; rssLimitMiB: number; waitMs?: number },
): Promise<Verdict> {
  const topic = await newTopic(s, 'badinput', 3, [500]);
  const p = await paymentProducer(s, topic);
  const seqs = new Map<string, number>();
  // A template valid record, to derive truncated bodies and unknown schema ids from real bytes.
  const kafka = createKafka({ brokers: s.brokers, clientId: 'strand-chaos' });
  const raw = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
  await raw.connect();
  const schemaId = await p.schemaId();
  const body = Buffer.from('0a7061792d7465737408616363742d31', 'hex');
  const kinds: BadKind[] = [
    'random-bytes',
    'bad-magic',
    'unknown-schema-id',
    'truncated',
    'large-value',
    'empty-value',
    'null-value',
  ];
  const expected = new Map<BadKind, number>();
  let validSent = 0;
  let badSent = 0;
  let hostileValid = 0;
  const rounds = 20;
  for (let r = 0; r < rounds; r++) {
    const validN = Math.round(o.valid / rounds);
    const jobs = Array.from({ length: validN }, (_, k) => payment(validSent + k, o.keys, seqs));
    // Valid but hostile: no key (unordered), malformed Strand headers.
    const results = await p.enqueueMany(
      jobs.map((j, k) =>
        k % 50 === 0
          ? {
              ...j,
              headers: { 'strand-attempt': 'NaN', 'strand-due-at': 'tomorrow', 'x-binary': '\u0000\u00ff' },
            }
          : j,
      ),
    );
    hostileValid += results.filter((_, k) => k % 50 === 0).length;
    validSent += validN;
    const badN = Math.round(o.bad / rounds);
    const messages = [];
    for (let k = 0; k < badN; k++) {
      // Large values are few (each is ~1 MB).
      let kind = kinds[(badSent + k) % kinds.length]!;
      if (kind === 'large-value' && (badSent + k) % 1000 !== 4) kind = 'random-bytes';
      expected.set(kind, (expected.get(kind) ?? 0) + 1);
      let value: Buffer | null;
      switch (kind) {
        case 'random-bytes':
          value = randomBytes(1 + Math.floor(Math.random() * 200));
          if (value[0] === 0) value[0] = 1;
          break;
        case 'bad-magic':
          value = Buffer.concat([Buffer.from([2, 0, 0, 0, schemaId]), body]);
          break;
        case 'unknown-schema-id':
          value = Buffer.concat([Buffer.from([0, 0x7f, 0xff, 0xff, 0xf0 - (k % 10)]), body]);
          break;
        case 'truncated': {
          const id = Buffer.alloc(5);
          id.writeUInt32BE(schemaId, 1);
          value = Buffer.concat([id, body.subarray(0, 3)]);
          break;
        }
        case 'large-value':
          value = Buffer.alloc(1_000_000, 0x41);
          break;
        case 'empty-value':
          value = Buffer.alloc(0);
          break;
        case 'null-value':
          value = null;
          break;
      }
      messages.push({ key: k % 3 === 0 ? null : `bad-${k % 97}`, value, headers: { 'chaos-kind': kind } });
    }
    for (let i = 0; i < messages.length; i += 200)
      await raw.send({ topic, acks: -1, messages: messages.slice(i, i + 200) });
    badSent += badN;
  }
  await raw.disconnect();
  await p.disconnect();

  const fleet = new ChaosFleet(s, {
    topic,
    groupId: `${topic}-g`,
    concurrency: 32,
    tiers: [500],
    maxBufferedJobs: 1000,
  });
  const child = fleet.start();
  const t0 = Date.now();
  let peak = 0;
  const completed = () => completions(fleet).size;
  const admin = kafka.admin();
  await admin.connect();
  // Records on the DLQ as the broker counts them (its end offsets; the worker writes no
  // transactions there): only to know when to stop waiting. The verdict reads the records back.
  const dlqEnds = async () =>
    new Map((await admin.fetchTopicOffsets(`${topic}.dlq`)).map((x) => [x.partition, Number(x.high)]));
  const dlqRecords = async () => [...(await dlqEnds()).values()].reduce((a, b) => a + b, 0);
  const deadline = Date.now() + (o.waitMs ?? 10 * 60_000);
  while (Date.now() < deadline) {
    peak = Math.max(peak, rssMiB(child.pid));
    if (completed() >= validSent && (await dlqRecords()) >= badSent) break;
    await sleep(250);
  }
  const seconds = (Date.now() - t0) / 1000;
  const workerAlive = child.exitCode === null;
  await fleet.killAll();

  // Read the DLQ back and reconcile it, per kind of bad record, with what was written: each
  // record's kind comes from the header the writer put on it, its reason from the worker.
  const reasons = new Map<string, number>();
  const deadByKind = new Map<string, number>();
  let wrongReason = 0;
  let largeIntact = 0;
  const consumer = kafka.consumer({ groupId: `${topic}-dlq-check`, maxBytesPerPartition: 2 * 1024 * 1024 });
  await consumer.connect();
  await consumer.subscribe({ topic: `${topic}.dlq`, fromBeginning: true });
  let read = 0;
  const ends = await dlqEnds();
  const positions = new Map<number, number>();
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      read++;
      positions.set(partition, Number(message.offset) + 1);
      const kind = message.headers?.['chaos-kind']?.toString() as BadKind | undefined;
      const reason = message.headers?.['strand-decode-reason']?.toString() ?? 'none';
      deadByKind.set(kind ?? '(not a bad record)', (deadByKind.get(kind ?? '(not a bad record)') ?? 0) + 1);
      reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
      if (!kind || EXPECTED_REASON[kind] !== reason) wrongReason++;
      if (kind === 'large-value' && message.value?.length === 1_000_000) largeIntact++;
    },
  });
  const readAll = () => [...ends].every(([p, end]) => (positions.get(p) ?? 0) >= end);
  // Reading back takes seconds; a third of a short wait (inside npm test) keeps the whole in budget.
  const readDeadline = Date.now() + (o.waitMs === undefined ? 120_000 : Math.min(120_000, o.waitMs / 3));
  while (!readAll() && Date.now() < readDeadline) await sleep(200);
  await consumer.disconnect();
  await admin.disconnect();
  const total = read;

  const lines = fleet.read();
  const figures = {
    validJobs: validSent,
    hostileButValid: hostileValid,
    badRecords: badSent,
    badByKind: Object.fromEntries(expected),
    completed: completed(),
    deadLettered: total,
    deadLetteredByKind: Object.fromEntries(deadByKind),
    dlqReasons: Object.fromEntries(reasons),
    wrongReason,
    largeValuesIntact: `${largeIntact}/${expected.get('large-value') ?? 0}`,
    orderViolations: keyOrderViolations(lines).length,
    peakRssMiB: Math.round(peak),
    workerAlive,
    seconds: Math.round(seconds),
  };
  const failures: string[] = [];
  if (figures.completed !== validSent)
    failures.push(`${validSent - figures.completed} valid jobs not completed`);
  for (const kind of new Set<string>([...expected.keys(), ...deadByKind.keys()])) {
    const written = expected.get(kind as BadKind) ?? 0;
    const dead = deadByKind.get(kind) ?? 0;
    if (dead !== written) failures.push(`${kind}: ${dead} dead-lettered for ${written} written`);
  }
  if (!readAll()) failures.push(`the DLQ was not read to its end (${total} records read)`);
  if (wrongReason !== 0) failures.push(`${wrongReason} DLQ records with the wrong reason`);
  if (largeIntact !== (expected.get('large-value') ?? 0)) failures.push('a large value was altered');
  if (figures.orderViolations !== 0) failures.push(`${figures.orderViolations} keys out of order`);
  if (peak > o.rssLimitMiB) failures.push(`peak RSS ${Math.round(peak)} MiB over ${o.rssLimitMiB}`);
  if (!workerAlive) failures.push('the worker exited');
  return { scenario: 'bad-input', passed: failures.length === 0, figures, failures };
}

/**
 * Rebalances: scale 1 → 4 → 2 workers (the last two leave, one by SIGTERM, one by SIGKILL) while
 * jobs run. Verdict: nothing lost, per-key first completions in order, no committed offset ever
 * moves backwards (sampled every 200 ms).
 */
export async function rebalanceScenario(s: ChaosStack, o: { jobs: number; keys: number }): Promise<Verdict> {
  const topic = await newTopic(s, 'rebalance', 6);
  const feed = await PaymentFeed.open(s, topic, o.keys);
  await feed.enqueue(o.jobs);
  const groupId = `${topic}-g`;
  const fleet = new ChaosFleet(s, {
    topic,
    groupId,
    concurrency: 2,
    minMs: 5,
    maxMs: 15,
    sessionTimeoutMs: 6000,
  });
  const watch = await watchCommits(s, groupId, topic);
  const completed = () => completions(fleet).size;
  const t0 = Date.now();
  fleet.start();
  while (completed() < o.jobs * 0.15) await sleep(100);
  const extra = [fleet.start(), fleet.start(), fleet.start()];
  const pids = () =>
    new Set(
      fleet
        .read()
        .filter((l) => l.kind === 'C')
        .map((l) => l.pid),
    ).size;
  // One worker drains partitions a few at a time, so the backlog alone may leave a late joiner's
  // partitions empty: keep every partition receiving jobs until all four have completed some.
  await feed.feedWhile(() => pids() === 4, { perTick: 30, tickMs: 100, maxMs: 60_000 });
  await feed.close();
  const jobs = feed.jobIds.length;
  const atFour = completed();
  await fleet.kill(extra[0]!, 'SIGTERM');
  await fleet.kill(extra[1]!, 'SIGKILL');
  const deadline = Date.now() + 5 * 60_000;
  while (completed() < jobs && Date.now() < deadline) await sleep(300);
  await sleep(1500); // a last commit interval
  await watch.stop();
  const committed = [...watch.last.values()].reduce((a, b) => a + b, 0);
  await fleet.killAll();
  const lines = fleet.read();
  const figures = {
    jobs,
    backlog: o.jobs,
    keys: o.keys,
    workersSeen: pids(),
    completedWhenFourRan: atFour,
    completed: completed(),
    lost: jobs - completed(),
    duplicateDeliveries:
      lines.filter((l) => l.kind === 'S').length -
      new Set(lines.filter((l) => l.kind === 'S').map((l) => l.jobId)).size,
    orderViolations: keyOrderViolations(lines).length,
    commitSamples: watch.samples,
    backwardsCommits: watch.backwards.length,
    committedAtEnd: committed,
    seconds: Math.round((Date.now() - t0) / 1000),
  };
  const failures: string[] = [];
  if (figures.lost !== 0) failures.push(`${figures.lost} jobs lost`);
  if (figures.workersSeen < 4) failures.push(`only ${figures.workersSeen} workers took part`);
  if (figures.orderViolations !== 0) failures.push(`${figures.orderViolations} keys out of order`);
  if (watch.backwards.length)
    failures.push(`commits moved backwards: ${watch.backwards.slice(0, 3).join(', ')}`);
  if (committed !== jobs) failures.push(`committed ${committed} of ${jobs}`);
  return { scenario: 'rebalance', passed: failures.length === 0, figures, failures };
}

/**
 * The failover scenarios' cluster: a 3-node KRaft devstack in a home of its own (`home`), on ports
 * 19092+ (registry 18081), so it runs beside the main stack. Returns its brokers; `stackDown({ home })`
 * stops it.
 */
export async function threeNodeCluster(home: string): Promise<string[]> {
  const { info } = await stackUp({
    home,
    brokers: 3,
    kafkaPort: 19092,
    registryPort: 18081,
    onProgress: (l) => console.error(`[${home} stack] ${l}`),
  });
  return info.brokers;
}

/**
 * SIGKILLs the broker of `home`'s cluster that leads the most partitions of `topic`, and restarts
 * it after `downMs`. Returns which broker, when (ms after `t0`) and how many leaderships it held.
 */
export async function killBusiestLeader(
  admin: Admin,
  topic: string,
  home: string,
  downMs: number,
  t0: number,
): Promise<{ broker: string; at: number; leaderships: number }> {
  const meta = await admin.fetchTopicMetadata({ topics: [topic] });
  const leaders = new Map<number, number>();
  for (const part of meta.topics[0]?.partitions ?? [])
    leaders.set(part.leader, (leaders.get(part.leader) ?? 0) + 1);
  const [leader, count] = [...leaders].sort((a, b) => b[1] - a[1])[0] ?? [1, 0];
  const broker = `kafka-${leader}`;
  const at = Date.now() - t0;
  await stopStackProcess(broker, { home, signal: 'SIGKILL' });
  await sleep(downMs);
  await restartStackProcess(broker, { home });
  return { broker, at, leaderships: count };
}

/**
 * Broker failover: a 3-node KRaft cluster (its own devstack home and ports), a topic with
 * replication 3 and min.insync.replicas 2, a producer enqueueing at a steady rate (acks=all,
 * idempotent) and 2 workers with the Redis idempotency store. The leader of the most partitions is
 * SIGKILLed `kills` times and restarted after `downMs`. Verdict: every acknowledged enqueue
 * completed exactly once, no worker exited; the longest processing pause is reported.
 */
export async function failoverScenario(
  registryUrl: string,
  o: { jobs: number; rate: number; kills: number; downMs: number },
): Promise<Verdict> {
  const home = '.strand/failover';
  const s: ChaosStack = { brokers: await threeNodeCluster(home), registryUrl };
  const topic = chaosTopicName('failover');
  await createJobTopics(
    { brokers: s.brokers },
    { topic, partitions: 6, replication: 3, tierDelays: [], configs: { 'min.insync.replicas': '2' } },
  );
  const fleet = new ChaosFleet(
    s,
    {
      ...steadyWorkers(topic),
      sessionTimeoutMs: 10_000,
    },
    // Worker logs are kept (info) so that a stall leaves evidence behind (see the open problem in issue 10).
    process.env.CHAOS_LOG_LEVEL ?? 'info',
  );
  const workers = [fleet.start(), fleet.start()];
  // Counts the sends the producer had to repeat because kafkajs answered without some partitions.
  let producerResends = 0;
  const counting = createLogger({
    level: 'warn',
    destination: {
      write: (line: string) => {
        if (line.includes('missing from the produce answer')) producerResends++;
      },
    },
  });
  const p = await paymentProducer(s, topic, counting);
  const t0 = Date.now();
  const steady = steadyProducer(() => p, { rate: o.rate, jobs: o.jobs, keys: 200 });
  const { acknowledged, where } = steady;
  const admin = createKafka({ brokers: s.brokers, clientId: 'strand-chaos' }).admin();
  await admin.connect();
  const killed: { broker: string; at: number; leaderships: number }[] = [];
  for (let k = 0; k < o.kills; k++) {
    await sleep(5000);
    killed.push(await killBusiestLeader(admin, topic, home, o.downMs, t0));
  }
  await steady.finish(5 * 60_000);
  await p.disconnect().catch(() => undefined);
  await awaitLedger(fleet, acknowledged, Number(process.env.CHAOS_WAIT_MS ?? 5 * 60_000));
  const done = completions(fleet);
  const missingWhere = acknowledged.filter((id) => !done.has(id)).map((id) => where.get(id));
  if (missingWhere.length) console.error(`missing at partition/offset: ${missingWhere.join(' ')}`);
  const deadLettered = await dlqDepth(admin, topic, `${topic}.dlq`);
  const exited = workers.filter((w) => w.exitCode !== null || w.signalCode !== null).length;
  await fleet.killAll();
  await admin.disconnect();
  const times = fleet
    .read()
    .filter((l) => l.kind === 'C')
    .map((l) => l.at)
    .sort((a, b) => a - b);
  let longestPause = 0;
  for (let i = 1; i < times.length; i++) longestPause = Math.max(longestPause, times[i]! - times[i - 1]!);
  const missing = acknowledged.filter((id) => !done.has(id)).length;
  const twice = [...done.values()].filter((n) => n > 1).length;
  await stackDown({ home });
  const figures = {
    acknowledged: acknowledged.length,
    enqueueFailures: steady.failures,
    brokerKills: killed,
    completed: done.size,
    missing,
    completedMoreThanOnce: twice,
    deadLettered,
    producerResends,
    longestProcessingPauseMs: longestPause,
    workersExited: exited,
    seconds: Math.round((Date.now() - t0) / 1000),
  };
  const failures: string[] = [];
  if (missing) failures.push(`${missing} acknowledged jobs never completed (worker logs: ${fleet.dir})`);
  if (twice) failures.push(`${twice} jobs completed more than once`);
  if (deadLettered) failures.push(`${deadLettered} jobs dead-lettered for a broker outage`);
  if (exited) failures.push(`${exited} workers exited`);
  if (killed.length < o.kills) failures.push('fewer broker kills than asked');
  return { scenario: 'failover', passed: failures.length === 0, figures, failures };
}

/** Completion lines of the ledger, and the helpers every scenario's accounting uses. */
function completions(fleet: ChaosFleet): Map<string, number> {
  const counts = new Map<string, number>();
  for (const l of fleet.read()) if (l.kind === 'C') counts.set(l.jobId, (counts.get(l.jobId) ?? 0) + 1);
  return counts;
}

/** Waits until every acknowledged job has a completion line, at most `waitMs`. */
async function awaitLedger(
  fleet: ChaosFleet,
  acknowledged: readonly string[],
  waitMs: number,
): Promise<void> {
  const deadline = Date.now() + waitMs;
  while (Date.now() < deadline) {
    const done = completions(fleet);
    if (acknowledged.every((id) => done.has(id))) return;
    await sleep(500);
  }
}

async function dlqCount(s: ChaosStack, topic: string): Promise<number> {
  const admin = createKafka({ brokers: s.brokers, clientId: 'strand-chaos' }).admin();
  await admin.connect();
  try {
    return await dlqDepth(admin, topic, `${topic}.dlq`);
  } finally {
    await admin.disconnect();
  }
}

/**
 * Registry outage, then Redis outage, mid-run (each service cut behind a TCP proxy that only the
 * workers use). 2 workers with the Redis idempotency store; a steady producer. During the
 * registry outage jobs with a known schema keep completing, while jobs of a schema version the
 * workers have not seen yet (registered just before the cut) wait; during the Redis outage no
 * handler starts (fail closed). Verdict: everything acknowledged completed once after recovery,
 * nothing dead-lettered.
 */
export async function outageScenario(
  s: ChaosStack,
  o: { jobs: number; rate: number; outageMs: number },
): Promise<Verdict> {
  const topic = await newTopic(s, 'outage', 6);
  const reg = new URL(s.registryUrl);
  const registryProxy = new TcpProxy(reg.hostname, Number(reg.port));
  const redisProxy = new TcpProxy('127.0.0.1', redisPort());
  await Promise.all([registryProxy.start(), redisProxy.start()]);
  const fleet = new ChaosFleet(
    {
      brokers: s.brokers,
      registryUrl: `${reg.protocol}//${reg.hostname}:${registryProxy.port}${reg.pathname}`,
    },
    {
      ...steadyWorkers(topic),
      redisPort: redisProxy.port,
      // Waiting jobs stay buffered; room for the whole outage's worth, so what is measured is
      // whether they block the others, not the buffer cap (which stops intake by design).
      maxBufferedJobs: 10_000,
    },
  );
  const workers = [fleet.start(), fleet.start()];
  const v1 = await paymentProducer(s, topic);
  const v2 = new JobProducer<Payment>({
    brokers: s.brokers,
    registry: { url: s.registryUrl },
    topic,
    schema: {
      ...paymentSchema,
      fields: [
        ...(paymentSchema as { fields: object[] }).fields,
        { name: 'channel', type: 'string', default: 'web' },
      ],
    },
    logger: quiet,
  });
  await v2.connect();
  await v2.schemaId(); // registered now; no worker has seen its id
  const windows = { registry: [0, 0], redis: [0, 0] };
  let useV2 = false;
  let flip = false;
  const steady = steadyProducer(
    () => {
      flip = !flip;
      // The new schema's jobs use keys of their own, so the jobs they hold back are theirs only.
      return useV2 && flip ? { producer: v2, keyPrefix: 'v2-' } : v1;
    },
    { rate: o.rate, jobs: o.jobs, keys: 200 },
  );
  const t0 = Date.now();
  // The workers must have met the schema (joined, decoded a few jobs) for it to be "known".
  await sleep(5000);
  while (completions(fleet).size < o.rate && Date.now() - t0 < 60_000) await sleep(200);
  windows.registry[0] = Date.now();
  await registryProxy.cut();
  useV2 = true;
  await sleep(o.outageMs);
  await registryProxy.restore();
  windows.registry[1] = Date.now();
  useV2 = false;
  await sleep(5000);
  windows.redis[0] = Date.now();
  const ackedAtRedisCut = steady.acknowledged.length;
  await redisProxy.cut();
  await sleep(o.outageMs);
  const enqueuedDuringRedisOutage = steady.acknowledged.length - ackedAtRedisCut;
  await redisProxy.restore();
  windows.redis[1] = Date.now();
  await steady.finish(5 * 60_000);
  await Promise.all([v1.disconnect(), v2.disconnect()]).catch(() => undefined);
  const { acknowledged } = steady;
  await awaitLedger(fleet, acknowledged, 3 * 60_000);
  const exited = workers.filter((w) => w.exitCode !== null || w.signalCode !== null).length;
  await fleet.killAll();
  await Promise.all([registryProxy.cut(), redisProxy.cut()]);
  const lines = fleet.read();
  const done = completions(fleet);
  const within = (at: number, [from, to]: number[], graceMs = 0) => at >= from! + graceMs && at <= to!;
  const v2Ids = new Set(acknowledged.filter((id) => steady.via.get(id) === v2));
  const completedInRegistryOutage = lines.filter((l) => l.kind === 'C' && within(l.at, windows.registry));
  // A handler that took its lease just before the cut may still start: one second of grace.
  const startsInRedisOutage = lines.filter((l) => l.kind === 'S' && within(l.at, windows.redis, 1000)).length;
  const deadLettered = await dlqCount(s, topic);
  const figures = {
    acknowledged: acknowledged.length,
    enqueueFailures: steady.failures,
    completed: done.size,
    missing: acknowledged.filter((id) => !done.has(id)).length,
    completedMoreThanOnce: [...done.values()].filter((n) => n > 1).length,
    deadLettered,
    outageMs: o.outageMs,
    completedDuringRegistryOutage: completedInRegistryOutage.length,
    newSchemaJobs: v2Ids.size,
    newSchemaJobsCompletedDuringRegistryOutage: completedInRegistryOutage.filter((l) => v2Ids.has(l.jobId))
      .length,
    enqueuedDuringRedisOutage,
    handlerStartsDuringRedisOutage: startsInRedisOutage,
    completedDuringRedisOutage: lines.filter((l) => l.kind === 'C' && within(l.at, windows.redis, 1000))
      .length,
    workersExited: exited,
    seconds: Math.round((Date.now() - t0) / 1000),
  };
  const failures: string[] = [];
  if (figures.missing) failures.push(`${figures.missing} acknowledged jobs never completed`);
  if (figures.completedMoreThanOnce)
    failures.push(`${figures.completedMoreThanOnce} jobs completed more than once`);
  if (deadLettered) failures.push(`${deadLettered} jobs dead-lettered during outages`);
  // Half of the known-schema jobs enqueued during the outage (half the rate) must finish in it.
  const expectedDuringOutage = Math.floor(((o.outageMs / 1000) * o.rate) / 4);
  if (figures.completedDuringRegistryOutage < expectedDuringOutage)
    failures.push(
      `only ${figures.completedDuringRegistryOutage} jobs with a known schema completed while the registry was down (expected >= ${expectedDuringOutage})`,
    );
  if (figures.newSchemaJobs === 0) failures.push('no job with the new schema was enqueued during the outage');
  if (figures.newSchemaJobsCompletedDuringRegistryOutage > 0)
    failures.push('jobs of an unseen schema completed without the registry (the outage was not real)');
  if (enqueuedDuringRedisOutage === 0) failures.push('nothing was enqueued during the Redis outage');
  if (startsInRedisOutage > 0)
    failures.push(`${startsInRedisOutage} handlers started while the idempotency store was down`);
  if (exited) failures.push(`${exited} workers exited`);
  return { scenario: 'outage', passed: failures.length === 0, figures, failures };
}

/**
 * Soak: a steady moderate rate for `minutes` through 2 workers (Redis idempotency store). Worker
 * RSS and open file descriptors are sampled every 10 s; after a warm-up, the mean of the last
 * minute must be within 10% of the first minute after warm-up. No error-level log lines.
 */
export async function soakScenario(
  s: ChaosStack,
  o: { minutes: number; rate: number; warmupMs: number },
): Promise<Verdict> {
  const topic = await newTopic(s, 'soak', 6);
  const fleet = new ChaosFleet(
    s,
    { topic, groupId: `${topic}-g`, concurrency: 8, minMs: 1, maxMs: 5, redisPrefix: `${topic}:idem:` },
    'warn',
  );
  const workers = [fleet.start(), fleet.start()];
  const p = await paymentProducer(s, topic);
  const durationMs = o.minutes * 60_000;
  const steady = steadyProducer(() => p, {
    rate: o.rate,
    jobs: Math.round((o.rate * durationMs) / 1000),
    keys: 500,
  });
  const t0 = Date.now();
  const samples: { at: number; pid: number; rss: number; fds: number }[] = [];
  while (Date.now() - t0 < durationMs) {
    await sleep(10_000);
    for (const w of workers)
      samples.push({ at: Date.now() - t0, pid: w.pid!, rss: rssMiB(w.pid), fds: openFds(w.pid) });
  }
  await steady.finish(60_000);
  await p.disconnect().catch(() => undefined);
  const { acknowledged } = steady;
  await awaitLedger(fleet, acknowledged, 2 * 60_000);
  const exited = workers.filter((w) => w.exitCode !== null || w.signalCode !== null).length;
  await fleet.killAll();
  const done = completions(fleet);
  const errors = errorLogLines(fleet.dir);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  const perWorker = workers.map((w) => {
    const mine = samples.filter((x) => x.pid === w.pid);
    const early = mine.filter((x) => x.at >= o.warmupMs && x.at < o.warmupMs + 60_000);
    const late = mine.filter((x) => x.at >= durationMs - 60_000);
    const growth = (k: 'rss' | 'fds') => mean(late.map((x) => x[k])) / mean(early.map((x) => x[k])) - 1;
    return {
      pid: w.pid,
      rssMiB: {
        early: Math.round(mean(early.map((x) => x.rss))),
        late: Math.round(mean(late.map((x) => x.rss))),
      },
      fds: {
        early: Math.round(mean(early.map((x) => x.fds))),
        late: Math.round(mean(late.map((x) => x.fds))),
      },
      rssGrowth: Number(growth('rss').toFixed(3)),
      fdGrowth: Number(growth('fds').toFixed(3)),
    };
  });
  const figures = {
    minutes: o.minutes,
    rate: o.rate,
    acknowledged: acknowledged.length,
    completed: done.size,
    missing: acknowledged.filter((id) => !done.has(id)).length,
    workers: perWorker,
    errorLogLines: errors.length,
    firstErrorLine: errors[0]?.slice(0, 300),
    workersExited: exited,
  };
  const failures: string[] = [];
  if (figures.missing) failures.push(`${figures.missing} acknowledged jobs never completed`);
  for (const w of perWorker) {
    if (!(w.rssGrowth < 0.1)) failures.push(`worker ${w.pid} RSS grew ${(w.rssGrowth * 100).toFixed(1)}%`);
    if (!(w.fdGrowth < 0.1)) failures.push(`worker ${w.pid} open fds grew ${(w.fdGrowth * 100).toFixed(1)}%`);
  }
  if (errors.length) failures.push(`${errors.length} error log lines`);
  if (exited) failures.push(`${exited} workers exited`);
  return { scenario: 'soak', passed: failures.length === 0, figures, failures };
}
