import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { loadAvroSchemaFile } from '../src/codec/index.js';
import { restartStackProcess, stackDown, stackUp, stopStackProcess } from '../src/devstack/index.js';
import { createKafka } from '../src/kafka/client.js';
import { createJobTopics } from '../src/kafka/topics.js';
import { createLogger } from '../src/observability/logger.js';
import { JobProducer } from '../src/producer/job-producer.js';
import { ChaosFleet, firstEventOrderViolations, rssMiB } from './fleet.js';

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
const schema = loadAvroSchemaFile('schemas/payment.avsc');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function newTopic(
  s: ChaosStack,
  name: string,
  partitions: number,
  tierDelays: number[] = [],
): Promise<string> {
  const topic = `chaos-${name}-${Date.now().toString(36)}`;
  await createJobTopics({ brokers: s.brokers }, { topic, partitions, tierDelays });
  return topic;
}

function payment(j: number, keys: number, seqs: Map<string, number>, memo: string | null = null) {
  const accountId = `acct-${j % keys}`;
  const sequence = (seqs.get(accountId) ?? 0) + 1;
  seqs.set(accountId, sequence);
  return {
    key: accountId,
    data: {
      paymentId: `pay-${j}`,
      accountId,
      amountCents: j,
      currency: 'EUR' as const,
      sequence,
      createdAt: Date.now(),
      memo,
    },
  };
}

async function producer(s: ChaosStack, topic: string, logger = quiet) {
  const p = new JobProducer({
    brokers: s.brokers,
    registry: { url: s.registryUrl },
    topic,
    schema,
    logger,
  });
  await p.connect();
  return p;
}

/** Enqueues `jobs` payments over `keys` accounts before the workers start. */
async function enqueueBacklog(s: ChaosStack, topic: string, jobs: number, keys: number): Promise<void> {
  const p = await producer(s, topic);
  const seqs = new Map<string, number>();
  for (let i = 0; i < jobs; i += 1000) {
    await p.enqueueMany(
      Array.from({ length: Math.min(1000, jobs - i) }, (_, k) => payment(i + k, keys, seqs)),
    );
  }
  await p.disconnect();
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
  },
): Promise<Verdict> {
  const topic = await newTopic(s, 'crash', 6);
  const list = `${topic}:effects`;
  await enqueueBacklog(s, topic, o.jobs, o.keys);
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
  const completed = () =>
    new Set(
      fleet
        .read()
        .filter((l) => l.kind === 'C')
        .map((l) => l.jobId),
    ).size;
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
  const deadline = Date.now() + 5 * 60_000;
  while (completed() < o.jobs && Date.now() < deadline) await sleep(500);
  const seconds = (Date.now() - t0) / 1000;
  await fleet.killAll();
  const redis = new Redis({ host: '127.0.0.1', port: 6379 });
  const effects = await redis.lrange(list, 0, -1);
  await redis.del(list);
  await redis.quit();
  const lines = fleet.read();
  const counts = new Map<string, number>();
  for (const id of effects) counts.set(id, (counts.get(id) ?? 0) + 1);
  const starts = lines.filter((l) => l.kind === 'S').length;
  // A duplicate side effect is the documented gap when the first run finished its side effect
  // and its process was killed before the done marker was written (within a few ms).
  const duplicated = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
  const inCrashWindow = duplicated.filter((id) =>
    lines.some(
      (l) => l.kind === 'C' && l.jobId === id && killedAt.has(l.pid) && killedAt.get(l.pid)! - l.at < 100,
    ),
  ).length;
  const figures = {
    jobs: o.jobs,
    keys: o.keys,
    workers: o.workers,
    concurrencyPerWorker: o.concurrency ?? 16,
    kills,
    completed: completed(),
    lost: o.jobs - completed(),
    handlerStarts: starts,
    duplicateDeliveries: starts - new Set(lines.filter((l) => l.kind === 'S').map((l) => l.jobId)).size,
    sideEffects: effects.length,
    duplicateSideEffects: duplicated.length,
    duplicateSideEffectsInCrashWindow: inCrashWindow,
    orderViolations: firstEventOrderViolations(lines, 'C').length,
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
  o: { valid: number; bad: number; keys: number; rssLimitMiB: number },
): Promise<Verdict> {
  const topic = await newTopic(s, 'badinput', 3, [500]);
  const p = await producer(s, topic);
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
  const completed = () =>
    new Set(
      fleet
        .read()
        .filter((l) => l.kind === 'C')
        .map((l) => l.jobId),
    ).size;
  const admin = kafka.admin();
  await admin.connect();
  const dlqCount = async () =>
    (await admin.fetchTopicOffsets(`${topic}.dlq`)).reduce((n, x) => n + Number(x.high), 0);
  const deadline = Date.now() + 10 * 60_000;
  while (Date.now() < deadline) {
    peak = Math.max(peak, rssMiB(child.pid));
    if (completed() >= validSent && (await dlqCount()) >= badSent) break;
    await sleep(250);
  }
  const seconds = (Date.now() - t0) / 1000;
  const workerAlive = child.exitCode === null;
  await fleet.killAll();

  // Read the DLQ back: the reason of every record, and that its bytes are the original ones.
  const reasons = new Map<string, number>();
  let wrongReason = 0;
  let largeIntact = 0;
  const consumer = kafka.consumer({ groupId: `${topic}-dlq-check`, maxBytesPerPartition: 2 * 1024 * 1024 });
  await consumer.connect();
  await consumer.subscribe({ topic: `${topic}.dlq`, fromBeginning: true });
  let read = 0;
  const total = await dlqCount();
  await consumer.run({
    eachMessage: async ({ message }) => {
      read++;
      const kind = message.headers?.['chaos-kind']?.toString() as BadKind | undefined;
      const reason = message.headers?.['strand-decode-reason']?.toString() ?? 'none';
      reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
      if (!kind || EXPECTED_REASON[kind] !== reason) wrongReason++;
      if (kind === 'large-value' && message.value?.length === 1_000_000) largeIntact++;
    },
  });
  const readDeadline = Date.now() + 120_000;
  while (read < total && Date.now() < readDeadline) await sleep(200);
  await consumer.disconnect();
  await admin.disconnect();

  const lines = fleet.read();
  const figures = {
    validJobs: validSent,
    hostileButValid: hostileValid,
    badRecords: badSent,
    badByKind: Object.fromEntries(expected),
    completed: completed(),
    deadLettered: total,
    dlqReasons: Object.fromEntries(reasons),
    wrongReason,
    largeValuesIntact: `${largeIntact}/${expected.get('large-value') ?? 0}`,
    orderViolations: firstEventOrderViolations(lines, 'S').length,
    peakRssMiB: Math.round(peak),
    workerAlive,
    seconds: Math.round(seconds),
  };
  const failures: string[] = [];
  if (figures.completed !== validSent)
    failures.push(`${validSent - figures.completed} valid jobs not completed`);
  if (total !== badSent) failures.push(`${total} DLQ records for ${badSent} bad ones`);
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
  await enqueueBacklog(s, topic, o.jobs, o.keys);
  const groupId = `${topic}-g`;
  const fleet = new ChaosFleet(s, {
    topic,
    groupId,
    concurrency: 2,
    minMs: 5,
    maxMs: 15,
    sessionTimeoutMs: 6000,
  });
  const admin = createKafka({ brokers: s.brokers, clientId: 'strand-chaos' }).admin();
  await admin.connect();
  const last = new Map<number, number>();
  const backwards: string[] = [];
  let samples = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const [res] = await admin.fetchOffsets({ groupId, topics: [topic] }).catch(() => []);
      for (const part of res?.partitions ?? []) {
        const offset = Number(part.offset);
        if (offset < 0) continue;
        const prev = last.get(part.partition);
        if (prev !== undefined && offset < prev)
          backwards.push(`partition ${part.partition}: ${prev} -> ${offset}`);
        last.set(part.partition, offset);
      }
      samples++;
      await sleep(200);
    }
  })();
  const completed = () =>
    new Set(
      fleet
        .read()
        .filter((l) => l.kind === 'C')
        .map((l) => l.jobId),
    ).size;
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
  const fourBy = Date.now() + 60_000;
  while (pids() < 4 && Date.now() < fourBy) await sleep(200);
  const atFour = completed();
  await fleet.kill(extra[0]!, 'SIGTERM');
  await fleet.kill(extra[1]!, 'SIGKILL');
  const deadline = Date.now() + 5 * 60_000;
  while (completed() < o.jobs && Date.now() < deadline) await sleep(300);
  await sleep(1500); // a last commit interval
  sampling = false;
  await sampler;
  const committed = [...last.values()].reduce((a, b) => a + b, 0);
  await admin.disconnect();
  await fleet.killAll();
  const lines = fleet.read();
  const figures = {
    jobs: o.jobs,
    keys: o.keys,
    workersSeen: pids(),
    completedWhenFourRan: atFour,
    completed: completed(),
    lost: o.jobs - completed(),
    duplicateDeliveries:
      lines.filter((l) => l.kind === 'S').length -
      new Set(lines.filter((l) => l.kind === 'S').map((l) => l.jobId)).size,
    orderViolations: firstEventOrderViolations(lines, 'C').length,
    commitSamples: samples,
    backwardsCommits: backwards.length,
    committedAtEnd: committed,
    seconds: Math.round((Date.now() - t0) / 1000),
  };
  const failures: string[] = [];
  if (figures.lost !== 0) failures.push(`${figures.lost} jobs lost`);
  if (figures.workersSeen < 4) failures.push(`only ${figures.workersSeen} workers took part`);
  if (figures.orderViolations !== 0) failures.push(`${figures.orderViolations} keys out of order`);
  if (backwards.length) failures.push(`commits moved backwards: ${backwards.slice(0, 3).join(', ')}`);
  if (committed !== o.jobs) failures.push(`committed ${committed} of ${o.jobs}`);
  return { scenario: 'rebalance', passed: failures.length === 0, figures, failures };
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
  const { info } = await stackUp({
    home,
    brokers: 3,
    kafkaPort: 19092,
    registryPort: 18081,
    onProgress: (l) => console.error(`[failover stack] ${l}`),
  });
  const s: ChaosStack = { brokers: info.brokers, registryUrl };
  const topic = `chaos-failover-${Date.now().toString(36)}`;
  await createJobTopics(
    { brokers: s.brokers },
    { topic, partitions: 6, replication: 3, tierDelays: [], configs: { 'min.insync.replicas': '2' } },
  );
  const fleet = new ChaosFleet(s, {
    topic,
    groupId: `${topic}-g`,
    concurrency: 8,
    minMs: 1,
    maxMs: 3,
    redisPrefix: `${topic}:idem:`,
    leaseMs: 5000,
    sessionTimeoutMs: 10_000,
  });
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
  const p = await producer(s, topic, counting);
  const acknowledged: string[] = [];
  const where = new Map<string, string>();
  let enqueueFailures = 0;
  let producing = true;
  const seqs = new Map<string, number>();
  const t0 = Date.now();
  const producerLoop = (async () => {
    let i = 0;
    while (producing && acknowledged.length < o.jobs) {
      const batch = Array.from({ length: Math.max(1, Math.round(o.rate / 20)) }, () =>
        payment(i++, 200, seqs),
      );
      const tick = Date.now();
      try {
        const results = await p.enqueueMany(batch);
        for (const r of results) {
          acknowledged.push(r.jobId);
          where.set(r.jobId, `${r.partition}/${r.offset}`);
        }
      } catch {
        enqueueFailures++; // not acknowledged: not in the ledger of promises
      }
      await sleep(Math.max(0, 50 - (Date.now() - tick)));
    }
  })();
  const admin = createKafka({ brokers: s.brokers, clientId: 'strand-chaos' }).admin();
  await admin.connect();
  const killed: { broker: string; at: number; leaderships: number }[] = [];
  for (let k = 0; k < o.kills; k++) {
    await sleep(5000);
    const meta = await admin.fetchTopicMetadata({ topics: [topic] });
    const leaders = new Map<number, number>();
    for (const part of meta.topics[0]?.partitions ?? [])
      leaders.set(part.leader, (leaders.get(part.leader) ?? 0) + 1);
    const [leader, count] = [...leaders].sort((a, b) => b[1] - a[1])[0] ?? [1, 0];
    const name = `kafka-${leader}`;
    killed.push({ broker: name, at: Date.now() - t0, leaderships: count });
    await stopStackProcess(name, { home, signal: 'SIGKILL' });
    await sleep(o.downMs);
    await restartStackProcess(name, { home });
  }
  const produceBy = Date.now() + 5 * 60_000;
  while (acknowledged.length < o.jobs && Date.now() < produceBy) await sleep(200);
  producing = false;
  await producerLoop;
  await p.disconnect().catch(() => undefined);
  const completedSet = () =>
    new Set(
      fleet
        .read()
        .filter((l) => l.kind === 'C')
        .map((l) => l.jobId),
    );
  const deadline = Date.now() + (process.env.CHAOS_WAIT_MS ? Number(process.env.CHAOS_WAIT_MS) : 5 * 60_000);
  while (Date.now() < deadline && acknowledged.some((id) => !completedSet().has(id))) await sleep(500);
  const [committedNow] = await admin.fetchOffsets({ groupId: `${topic}-g`, topics: [topic] });
  const deadLettered = (await admin.fetchTopicOffsets(`${topic}.dlq`)).reduce(
    (n, x) => n + Number(x.high),
    0,
  );
  const missingWhere = acknowledged.filter((id) => !completedSet().has(id)).map((id) => where.get(id));
  if (missingWhere.length) {
    console.error(`missing at partition/offset: ${missingWhere.join(' ')}`);
    console.error(`committed: ${JSON.stringify(committedNow?.partitions)}`);
    const started = new Set(
      fleet
        .read()
        .filter((l) => l.kind === 'S')
        .map((l) => l.jobId),
    );
    const missingIds = acknowledged.filter((id) => !completedSet().has(id));
    console.error(
      `missing but started: ${missingIds.filter((id) => started.has(id)).length}/${missingIds.length}`,
    );
  }
  const exited = workers.filter((w) => w.exitCode !== null || w.signalCode !== null).length;
  await fleet.killAll();
  await admin.disconnect();
  const lines = fleet.read();
  const completions = new Map<string, number>();
  for (const l of lines) if (l.kind === 'C') completions.set(l.jobId, (completions.get(l.jobId) ?? 0) + 1);
  const times = lines
    .filter((l) => l.kind === 'C')
    .map((l) => l.at)
    .sort((a, b) => a - b);
  let longestPause = 0;
  for (let i = 1; i < times.length; i++) longestPause = Math.max(longestPause, times[i]! - times[i - 1]!);
  const missing = acknowledged.filter((id) => !completions.has(id)).length;
  const twice = [...completions.values()].filter((n) => n > 1).length;
  await stackDown({ home });
  const figures = {
    acknowledged: acknowledged.length,
    enqueueFailures,
    brokerKills: killed,
    completed: completions.size,
    missing,
    completedMoreThanOnce: twice,
    deadLettered,
    producerResends,
    longestProcessingPauseMs: longestPause,
    workersExited: exited,
    seconds: Math.round((Date.now() - t0) / 1000),
  };
  const failures: string[] = [];
  if (missing) failures.push(`${missing} acknowledged jobs never completed`);
  if (twice) failures.push(`${twice} jobs completed more than once`);
  if (deadLettered) failures.push(`${deadLettered} jobs dead-lettered for a broker outage`);
  if (exited) failures.push(`${exited} workers exited`);
  if (killed.length < o.kills) failures.push('fewer broker kills than asked');
  return { scenario: 'failover', passed: failures.length === 0, figures, failures };
}
