/**
 * Chaos scenario `exactly-once` (issue 28): a two-stage pipeline, payments → ledger → notify, each
 * stage run by worker processes of test/support/pipeline-worker.ts (`ctx.enqueue` of one follow-up
 * per job), SIGKILLed every few seconds and replaced, and — on the three-node cluster — the broker
 * leading the most ledger partitions SIGKILLed and restarted once. A `read_committed` reader
 * (kafkajs' own consumer, no Strand code) then reads the ledger and notify topics: with
 * `exactlyOnce` each follow-up must be there exactly once, in per-key order by the payments'
 * sequence numbers; the same run with `exactlyOnce: false` must show duplicates (the check can fail).
 */
import { readdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { parseAvroSchema } from '../src/codec/index.js';
import { stackDown } from '../src/devstack/index.js';
import { HEADERS } from '../src/headers.js';
import { type Admin, createKafka } from '../src/kafka/client.js';
import { createJobTopics } from '../src/kafka/topics.js';
import { createLogger } from '../src/observability/logger.js';
import { topicNames } from '../src/topology/topics.js';
import { type RawRecord, rawConsume } from '../test/support/raw-kafka.js';
import { ChaosFleet } from './fleet.js';
import { type Payment, paymentProducer, paymentSchema } from './payments.js';
import {
  type ChaosStack,
  chaosTopicName,
  killBusiestLeader,
  steadyProducer,
  threeNodeCluster,
  type Verdict,
} from './scenarios.js';

export interface ExactlyOnceSize {
  jobs: number;
  keys: number;
  /** Enqueue rate (jobs/s): the input keeps arriving while the kills land. */
  rate: number;
  workersPerStage: number;
  /** At most this many SIGKILLs per run, one every `killEveryMs`, alternating between the stages. */
  kills: number;
  killEveryMs: [number, number];
  /** Run on a 3-node cluster of its own (RF 3, min.insync.replicas 2) and kill one partition leader. */
  threeNodes: boolean;
  leaderKillAtMs?: number;
  leaderDownMs?: number;
  waitMs?: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const between = ([lo, hi]: [number, number]) => lo + Math.random() * (hi - lo);

export async function exactlyOnceScenario(main: ChaosStack, o: ExactlyOnceSize): Promise<Verdict> {
  const home = '.strand/exactly-once';
  const s: ChaosStack = o.threeNodes
    ? { brokers: await threeNodeCluster(home), registryUrl: main.registryUrl }
    : main;
  const load = [loadavg()[0]!];
  const t0 = Date.now();
  const fleetsBefore = ChaosFleet.all.length;
  try {
    const on = await pipelineRun(s, o, true, home);
    load.push(loadavg()[0]!);
    const off = await pipelineRun(s, o, false, home);
    load.push(loadavg()[0]!);
    const failures = [
      ...on.failures.map((f) => `exactlyOnce: ${f}`),
      ...off.failures.map((f) => `at-least-once: ${f}`),
    ];
    const figures = {
      jobs: o.jobs,
      keys: o.keys,
      workersPerStage: o.workersPerStage,
      brokers: o.threeNodes ? 3 : 1,
      exactlyOnce: on.figures,
      atLeastOnce: off.figures,
      seconds: Math.round((Date.now() - t0) / 1000),
      loadAverage1m: load.map((l) => Math.round(l * 10) / 10),
    };
    return { scenario: 'exactly-once', passed: failures.length === 0, figures, failures };
  } finally {
    // A run that threw leaves no worker behind.
    for (const fleet of ChaosFleet.all.slice(fleetsBefore)) await fleet.killAll();
    if (o.threeNodes) await stackDown({ home });
  }
}

/** One run of the pipeline with `exactlyOnce` on or off; its figures and what failed. */
async function pipelineRun(s: ChaosStack, o: ExactlyOnceSize, exactlyOnce: boolean, home: string) {
  const mode = exactlyOnce ? 'on' : 'off';
  const [payments, ledger, notify] = ['pay', 'ledger', 'notify'].map((n) =>
    chaosTopicName(`eos-${mode}-${n}`),
  ) as [string, string, string];
  const replicated = o.threeNodes
    ? { replication: 3, configs: { 'min.insync.replicas': '2' } }
    : { replication: 1 };
  // No retry tiers: strict key order with exactlyOnce is refused for now (a run with every 7th
  // payment failing into a 300 ms tier under strict order showed duplicates: docs/chaos.md).
  const paymentTiers: number[] = [];
  for (const topic of [payments, ledger, notify]) {
    // On a fresh three-node cluster the metadata read after the create can reach a broker that has
    // not seen the topic yet (UNKNOWN_TOPIC_OR_PARTITION, which Strand's admin reads do not retry):
    // creating again finds the topic and reads again.
    for (let attempt = 1; ; attempt++) {
      try {
        await createJobTopics(
          { brokers: s.brokers },
          { topic, partitions: 6, tierDelays: topic === payments ? paymentTiers : [], ...replicated },
        );
        break;
      } catch (error) {
        if (attempt >= 5) throw error;
        await sleep(1000);
      }
    }
  }
  // Commits every second: a kill then finds completed jobs not yet committed (the control run must
  // show their follow-ups twice; at 300 ms a fast stage was often between commits with nothing).
  const worker = { exactlyOnce, concurrency: 32, commitIntervalMs: 1000, maxMs: 5 };
  const module = 'test/support/pipeline-worker.ts';
  // Worker logs kept at warn: a resend of partitions missing from kafkajs' produce answer is logged
  // there (a candidate cause of the duplicates and losses in docs/chaos.md).
  const logLevel = process.env.CHAOS_LOG_LEVEL ?? 'warn';
  const stages = [
    new ChaosFleet(
      s,
      {
        ...{ ...worker, topic: payments, groupId: `${payments}-g`, output: ledger },
        ...{ tiers: paymentTiers },
      },
      logLevel,
      module,
    ),
    new ChaosFleet(
      s,
      { ...worker, topic: ledger, groupId: `${ledger}-g`, output: notify, suffix: 'notify' },
      logLevel,
      module,
    ),
  ] as const;
  for (const fleet of stages) for (let i = 0; i < o.workersPerStage; i++) fleet.start();
  const admin = createKafka({ brokers: s.brokers, clientId: 'strand-chaos' }).admin();
  await admin.connect();
  const t0 = Date.now();
  // The input producer's own log (kafkajs' errors and retries, resent partitions), kept with the run.
  const producerLog = join(stages[0].dir, 'producer.log');
  const p = await paymentProducer(
    s,
    payments,
    createLogger({
      name: 'chaos-producer',
      level: logLevel,
      destination: pino.destination({ dest: producerLog, sync: true }),
    }),
  );
  const steady = steadyProducer(() => p, { rate: o.rate, jobs: o.jobs, keys: o.keys });
  const groups = [
    [`${payments}-g`, payments],
    [`${ledger}-g`, ledger],
  ] as const;
  const drained = async () =>
    steady.acknowledged.length >= o.jobs &&
    (await progress(admin, ...groups[0])).done &&
    (await progress(admin, ...groups[1])).done;

  // SIGKILL the oldest member of one stage, then of the other, every few seconds; each replaced at
  // once. A stage is killed only while it works: its group's committed offsets moved on by half a
  // second of input since its previous kill, so no kill lands while the stage still starts or waits
  // for the rebalance after a kill (the killed member stays in the group until its session expires),
  // when nothing is in flight and the kill would prove nothing.
  const kills = [0, 0];
  const committedAtKill = [0, 0];
  let stop = false;
  const killer = (async () => {
    for (let k = 0; k < o.kills && !stop; k++) {
      await sleep(between(o.killEveryMs));
      const stage = k % 2;
      let working = false;
      while (!stop && !working && !(await drained())) {
        // ...and only while it has input to work on (a kill of an idle member redoes nothing).
        const now = await progress(admin, ...groups[stage]!);
        working = now.committed >= committedAtKill[stage]! + o.rate / 2 && now.behind >= 10;
        if (!working) await sleep(250);
      }
      if (!working) break;
      const fleet = stages[stage]!;
      // The member working longest (a replacement killed while it starts would prove little).
      const victim = fleet.alive[0];
      if (!victim) continue;
      await fleet.kill(victim, 'SIGKILL');
      committedAtKill[stage] = (await progress(admin, ...groups[stage]!)).committed;
      kills[stage]!++;
      fleet.start();
    }
  })();
  let leaderKillError = '';
  const leaderKill = o.threeNodes
    ? (async () => {
        await sleep(o.leaderKillAtMs ?? 10_000);
        return killBusiestLeader(admin, ledger, home, o.leaderDownMs ?? 10_000, t0);
      })().catch((error: Error) => {
        leaderKillError = error.message;
        return undefined;
      })
    : Promise.resolve(undefined);

  await steady.finish(o.waitMs ?? 10 * 60_000);
  await p.disconnect().catch(() => undefined);
  const leader = await leaderKill;
  const by = Date.now() + (o.waitMs ?? 10 * 60_000);
  let caught = false;
  while (!caught && Date.now() < by) {
    caught = await drained();
    if (!caught) await sleep(500);
  }
  stop = true;
  await killer;
  const seconds = (Date.now() - t0) / 1000;
  for (const fleet of stages) await fleet.killAll();
  await admin.disconnect();

  const acknowledged = steady.acknowledged;
  // The input itself: a payment the producer wrote twice (kafkajs' idempotent producer around a
  // leader change, at least once: docs/guarantees.md) is two records, each run and committed once,
  // so its follow-ups are rightly two. Each stage is judged against the records of its input.
  const input = judge(
    await rawConsume(s.brokers, payments, Number.MAX_SAFE_INTEGER, { timeoutMs: 120_000 }),
    acknowledged,
  );
  const times = (suffix: string) => (id: string) => input.seen.get(id.slice(0, -suffix.length)) ?? 1;
  const ledgerCheck = judge(
    await rawConsume(s.brokers, ledger, Number.MAX_SAFE_INTEGER, { timeoutMs: 120_000 }),
    acknowledged.map((id) => `${id}:ledger`),
    times(':ledger'),
  );
  const notifyCheck = judge(
    await rawConsume(s.brokers, notify, Number.MAX_SAFE_INTEGER, { timeoutMs: 120_000 }),
    acknowledged.map((id) => `${id}:ledger:notify`),
    times(':ledger:notify'),
  );
  // Jobs a stage dead-lettered are not in its output: they count as missing, and their reasons say why.
  const deadLettered = await Promise.all(
    [payments, ledger].map(async (topic) =>
      (
        await rawConsume(s.brokers, topicNames(topic, 0).dlq, Number.MAX_SAFE_INTEGER, { timeoutMs: 30_000 })
      ).map((r) => `${r.headers['strand-job-id'] ?? '?'}: ${r.headers[HEADERS.deadReason] ?? '?'}`),
    ),
  );
  const figures = {
    acknowledged: acknowledged.length,
    payments: input.figures,
    deadLettered: deadLettered.map((d) => d.length),
    enqueueFailures: steady.failures,
    sigkills: kills[0]! + kills[1]!,
    duplicated: ledgerCheck.figures.duplicated + notifyCheck.figures.duplicated,
    sigkillsByStage: { payments: kills[0], ledger: kills[1] },
    leaderKill: leader ?? null,
    drained: caught,
    // Worker log lines: sends of partitions missing from kafkajs' produce answer, per stage.
    produceResends: stages.map((f) => logLines(f.dir, 'missing from the produce answer')),
    producerLog,
    logs: stages.map((f) => f.dir),
    ledger: ledgerCheck.figures,
    notify: notifyCheck.figures,
    seconds: Math.round(seconds),
  };
  const failures: string[] = [];
  if (!caught) failures.push(`the groups did not reach the end of their input in ${o.waitMs ?? 600_000} ms`);
  if (figures.sigkills < 1) failures.push('no worker was SIGKILLed');
  deadLettered.forEach((d, i) => {
    if (d.length > 0)
      failures.push(
        `${d.length} ${i === 0 ? 'payment' : 'ledger'} jobs dead-lettered (e.g. ${d.slice(0, 2).join('; ')})`,
      );
  });
  if (o.threeNodes && !leader) failures.push(`no partition leader was killed ${leaderKillError}`.trim());
  for (const [name, c] of [
    ['ledger', ledgerCheck],
    ['notify', notifyCheck],
  ] as const) {
    if (c.figures.missing)
      failures.push(`${c.figures.missing} ${name} jobs missing (e.g. ${c.missing.slice(0, 3).join(', ')})`);
    if (exactlyOnce && c.figures.duplicated)
      failures.push(`${c.figures.duplicated} ${name} jobs seen more than once (e.g. ${c.duplicated[0]})`);
    if (exactlyOnce && c.figures.orderViolations)
      failures.push(
        `${c.figures.orderViolations} ${name} records out of key order (${c.order.slice(0, 3).join('; ')})`,
      );
  }
  // Without exactlyOnce the same kills must show duplicates (in either stage's output), or the run
  // proved nothing.
  if (!exactlyOnce && ledgerCheck.figures.duplicated + notifyCheck.figures.duplicated === 0)
    failures.push('no follow-up seen twice: the run cannot tell exactly-once from at-least-once');
  return { figures, failures };
}

/**
 * Committed offsets of `groupId` on `topic`, summed, and whether they reached the end of every
 * partition (a transactional topic's end counts its commit markers; a worker's commit passes them).
 */
async function progress(
  admin: Admin,
  groupId: string,
  topic: string,
): Promise<{ committed: number; done: boolean; behind: number }> {
  try {
    const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
    const at = new Map((committed?.partitions ?? []).map((p) => [p.partition, Number(p.offset)]));
    const ends = await admin.fetchTopicOffsets(topic);
    return {
      committed: [...at.values()].reduce((a, b) => a + Math.max(0, b), 0),
      done: ends.every((o) => (at.get(o.partition) ?? -1) >= Number(o.high)),
      // Records past the group's commit (a transactional topic's markers count: an estimate).
      behind: ends.reduce(
        (n, e) => n + Math.max(0, Number(e.high) - Math.max(0, at.get(e.partition) ?? 0)),
        0,
      ),
    };
  } catch {
    return { committed: 0, done: false, behind: 0 }; // a broker down: not known yet
  }
}

const paymentType = parseAvroSchema(paymentSchema);

/**
 * What a read_committed reader saw of a stage's output against the acknowledged input: how often each
 * job id occurs (missing; duplicated: more often than `times(id)`, the records of its payment in the
 * input; not expected) and, per key in offset order, whether the payments' sequence numbers only go
 * up (every occurrence, so a duplicate re-emitted later breaks it; a payment the input holds twice
 * may repeat).
 */
function judge(
  all: readonly RawRecord[],
  expected: readonly string[],
  times: (id: string) => number = () => 1,
) {
  // The payments topic also holds release records of keys parked behind a failed payment.
  const records = all.filter((r) => r.value !== null && r.headers[HEADERS.release] === undefined);
  const seen = new Map<string, number>();
  const order: string[] = [];
  const lastSeq = new Map<string, number>();
  for (const r of [...records].sort((a, b) => a.partition - b.partition || a.offset - b.offset)) {
    const id = r.headers['strand-job-id'] ?? '?';
    seen.set(id, (seen.get(id) ?? 0) + 1);
    const seq = Number((paymentType.fromBuffer(r.value!.subarray(5)) as Payment).sequence);
    const key = r.key ?? '';
    const last = lastSeq.get(key);
    if (last !== undefined && (seq < last || (seq === last && times(id) < 2)))
      order.push(`${key}: #${seq} after #${last}`);
    lastSeq.set(key, seq);
  }
  const want = new Set(expected);
  const missing = expected.filter((id) => !seen.has(id));
  const duplicated = [...seen].filter(([id, n]) => n > times(id)).map(([id, n]) => `${id} ×${n}`);
  const unexpected = [...seen.keys()].filter((id) => !want.has(id));
  return {
    seen,
    missing,
    duplicated,
    order,
    figures: {
      records: records.length,
      jobs: seen.size,
      missing: missing.length,
      duplicated: duplicated.length,
      extraRecords: records.length - seen.size,
      // Ids not acknowledged to the producer (a batch whose answer a broker kill cut off): reported only.
      notAcknowledged: unexpected.length,
      orderViolations: order.length,
    },
  };
}

/** Worker log lines (`<dir>/worker-<pid>.log`) that contain `text`. */
function logLines(dir: string, text: string): number {
  return readdirSync(dir)
    .filter((f) => f.startsWith('worker-') && f.endsWith('.log'))
    .flatMap((f) => readFileSync(join(dir, f), 'utf8').split('\n'))
    .filter((l) => l.includes(text)).length;
}
