import { createKafka } from '../src/kafka/client.js';
import { createJobTopics } from '../src/kafka/topics.js';
import { keyState, type ParkingRecord, parkedJob } from '../test/support/parking-records.js';
import { rawProduceBulk } from '../test/support/raw-kafka.js';
import { ChaosFleet, keyOrderViolations, type LedgerLine, strictStartViolations } from './fleet.js';
import { PaymentFeed } from './payments.js';
import { type ChaosStack, chaosTopicName, type Verdict } from './scenarios.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Keys (of `keys`) whose jobs fail: released before the kill, parked over it. */
const RELEASED_EARLY = (k: number) => k < 5;
const PARKED_OVER_KILL = (k: number) => k >= 10 && k < 20;
const RELEASED_LATE = (k: number) => k >= 20 && k < 25;

/**
 * A big parking partition taken over (issue 25, defect 1): the job topic has one partition whose
 * history — `history` parked jobs, all released long ago — left that many tombstones in its
 * parking partition (and the job topic's own old records are gone). Two workers (strict key
 * order, tiers of 1 s and 3 s, no in-place retries): the owner runs three rounds of jobs over
 * `keys` keys; in round 1 keys 0–4 fail once (parked, released); in round 2 keys 20–24 fail once
 * (released just before the kill) and keys 10–19 fail three times (parked behind a retry that
 * outlasts the kill, later jobs parked behind it). The owner is SIGKILLed while those keys are
 * parked; the other member takes the partition over — it reads the whole parking partition first —
 * and round 3 is enqueued at once. Verdict: every job completed (none dead-lettered, nothing lost,
 * no parked job orphaned), no job of a key started before every earlier job of the key completed
 * (a parked key seen free would), the new owner started the partition (a key released last seen
 * parked would hold its round-3 jobs forever), and how long the takeover took.
 */
export async function parkingTakeoverScenario(
  s: ChaosStack,
  o: { history: number; jobsPerRound: number; keys: number; waitMs?: number },
): Promise<Verdict> {
  const topic = chaosTopicName('parktake');
  const groupId = `${topic}-g`;
  await createJobTopics({ brokers: s.brokers }, { topic, partitions: 1, tierDelays: [1000, 3000] });
  const kafka = createKafka({ brokers: s.brokers, clientId: 'strand-chaos' });
  const admin = kafka.admin();
  await admin.connect();
  const t0 = Date.now();
  // The job topic's old records (offsets below `history`) are gone, as retention leaves a busy one.
  const nulls = function* () {
    for (let i = 0; i < o.history; i++) yield { key: null, value: null, partition: 0 };
  };
  await rawProduceBulk(s.brokers, topic, nulls(), { chunk: 8000 });
  await admin.fetchTopicMetadata({ topics: [topic] }); // deleteTopicRecords needs it loaded
  await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: String(o.history) }] });
  // Their parked jobs and keys, released long ago: one tombstone each survives compaction.
  const tombstones = function* (): Generator<ParkingRecord> {
    for (let k = 0; k < 1000; k++) yield keyState(groupId, 0, `old-${k}`, null);
    for (let src = 0; src < o.history; src++) yield parkedJob(groupId, 0, src, null);
  };
  await rawProduceBulk(s.brokers, `${topic}.parked`, tombstones());
  const setupSeconds = (Date.now() - t0) / 1000;

  const fleet = new ChaosFleet(s, {
    ...{ topic, groupId, concurrency: 4, minMs: 2, maxMs: 6, tiers: [1000, 3000], inPlace: 0 },
    ...{ maxAttempts: 6, retryOrdering: 'strict', sessionTimeoutMs: 6000 },
  });
  const feed = await PaymentFeed.open(s, topic, o.keys);
  const ids: string[][] = [];
  const round = async (n: number, fails: (k: number) => string | null) => {
    // Key k's fourth job of the round fails as `fails(k)` says.
    const first = n * o.jobsPerRound;
    const memo = (i: number) => (Math.floor((i - first) / o.keys) === 3 ? fails(i % o.keys) : null);
    ids.push(await feed.enqueue(o.jobsPerRound, { memo }));
  };
  const done = () =>
    new Set(
      fleet
        .read()
        .filter((l) => l.kind === 'C')
        .map((l) => l.jobId),
    );
  const waitFor = async (check: () => boolean, ms: number) => {
    const by = Date.now() + ms;
    while (!check() && Date.now() < by) await sleep(250);
    return check();
  };
  const failures: string[] = [];
  const workers = [fleet.start(), fleet.start()];
  await round(0, (k) => (RELEASED_EARLY(k) ? 'fail-times-1' : null));
  const roundDone = (r: number) => () => {
    const d = done();
    return ids[r]!.every((id) => d.has(id));
  };
  if (!(await waitFor(roundDone(0), 120_000))) failures.push('round 1 did not complete');
  const heads = (lines: LedgerLine[], pick: (k: number) => boolean) =>
    lines.filter((l) => l.attempt > 1 && pick(Number(l.key.slice('acct-'.length))));
  await round(1, (k) => (PARKED_OVER_KILL(k) ? 'fail-times-3' : RELEASED_LATE(k) ? 'fail-times-1' : null));
  // The kill: keys 10–19 parked (their head failed and waits in a tier), keys 20–24 released.
  let killAt = 0;
  let parkedAtKill = 0;
  await waitFor(() => {
    const lines = fleet.read();
    const d = new Set(lines.filter((l) => l.kind === 'C').map((l) => l.jobId));
    const late = new Set(heads(lines, RELEASED_LATE).map((l) => l.jobId));
    const parked = new Set(heads(lines, PARKED_OVER_KILL).map((l) => l.jobId));
    parkedAtKill = [...parked].filter((id) => !d.has(id)).length;
    return late.size > 0 && [...late].every((id) => d.has(id)) && parkedAtKill > 0;
  }, 60_000);
  const [{ high: parkingRecords } = { high: '0' }] = await admin.fetchTopicOffsets(`${topic}.parked`);
  const owner = fleet.read().at(-1)?.pid;
  const killed = workers.find((w) => String(w.pid) === owner);
  if (!killed || parkedAtKill === 0) failures.push(`no owner to kill with keys parked (${parkedAtKill})`);
  else {
    killAt = Date.now();
    await fleet.kill(killed, 'SIGKILL');
  }
  await round(2, () => null);
  const all = ids.flat();
  await waitFor(() => {
    const d = done();
    return all.every((id) => d.has(id));
  }, o.waitMs ?? 300_000);
  const seconds = (Date.now() - t0) / 1000;
  await fleet.killAll();
  await feed.close();
  const dlq = await admin.fetchTopicOffsets(`${topic}.dlq`);
  await admin
    .deleteTopics({
      topics: [topic, `${topic}.retry.1`, `${topic}.retry.2`, `${topic}.dlq`, `${topic}.parked`],
    })
    .catch(() => undefined);
  await admin.disconnect();

  const lines = fleet.read();
  const d = done();
  const lastRound = new Set(ids[2] ?? []);
  const deadLettered = dlq.reduce((n, p) => n + Number(p.high), 0);
  const newOwnerStarts = lines.filter((l) => l.kind === 'S' && l.pid !== owner && l.at >= killAt);
  const roundThreeStart = Math.min(...newOwnerStarts.filter((l) => lastRound.has(l.jobId)).map((l) => l.at));
  const figures = {
    history: o.history,
    parkingRecordsAtKill: Number(parkingRecords),
    jobs: all.length,
    keys: o.keys,
    parkedAtKill,
    completed: all.filter((id) => d.has(id)).length,
    deadLettered,
    lost: Math.max(0, all.filter((id) => !d.has(id)).length - deadLettered),
    orderViolations: keyOrderViolations(lines).length,
    strictStartViolations: strictStartViolations(lines).length,
    newOwnerFirstStartMs: newOwnerStarts.length ? newOwnerStarts[0]!.at - killAt : null,
    newOwnerFirstJobTopicStartMs: Number.isFinite(roundThreeStart) ? roundThreeStart - killAt : null,
    setupSeconds: Math.round(setupSeconds),
    seconds: Math.round(seconds),
  };
  if (figures.parkingRecordsAtKill <= o.history)
    failures.push('the parking partition was not past its history');
  if (figures.lost !== 0) failures.push(`${figures.lost} jobs neither completed nor dead-lettered`);
  if (deadLettered !== 0) failures.push(`${deadLettered} jobs dead-lettered (none fails that often)`);
  if (figures.orderViolations !== 0) failures.push(`${figures.orderViolations} keys completed out of order`);
  const strict = strictStartViolations(lines);
  if (strict.length !== 0)
    failures.push(`${strict.length} keys started a job early: ${strict.slice(0, 3).join('; ')}`);
  if (figures.newOwnerFirstJobTopicStartMs === null)
    failures.push('the new owner never started the partition');
  return { scenario: 'parking-takeover', passed: failures.length === 0, figures, failures };
}
