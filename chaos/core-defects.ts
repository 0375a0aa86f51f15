/**
 * Chaos scenarios for two of issue 25's defects at realistic size: a job longer than the session
 * timeout running through rebalances (defect 2), and a long strict-order release while the other
 * keys of its partition keep flowing, with the owner SIGKILLed half-way (defect 4).
 */
import type { ChildProcess } from 'node:child_process';
import { createKafka } from '../src/kafka/client.js';
import { createJobTopics } from '../src/kafka/topics.js';
import type { JobProducer } from '../src/producer/job-producer.js';
import {
  ChaosFleet,
  completedRuns,
  keyOrderViolations,
  type LedgerLine,
  strictStartViolations,
  watchCommits,
} from './fleet.js';
import { type Payment, paymentProducer } from './payments.js';
import { type ChaosStack, chaosTopicName, type Verdict } from './scenarios.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(check: () => boolean, ms: number, pollMs = 1000): Promise<boolean> {
  const by = Date.now() + ms;
  while (!check() && Date.now() < by) await sleep(pollMs);
  return check();
}

/** Payments on named keys, each key with its own sequence 1, 2, ... (per-key order from the data). */
class KeyedFeed {
  private readonly seqs = new Map<string, number>();
  private n = 0;
  constructor(private readonly producer: JobProducer<Payment>) {}

  async enqueue(keys: readonly string[], memo: (i: number) => string | null = () => null): Promise<string[]> {
    const ids: string[] = [];
    for (let at = 0; at < keys.length; at += 1000) {
      const jobs = keys.slice(at, at + 1000).map((key, i) => {
        const sequence = (this.seqs.get(key) ?? 0) + 1;
        this.seqs.set(key, sequence);
        const j = this.n++;
        const data: Payment = {
          ...{ paymentId: `pay-${j}`, accountId: key, amountCents: j, currency: 'EUR' },
          ...{ sequence, createdAt: Date.now(), memo: memo(at + i) },
        };
        return { key, data };
      });
      for (const r of await this.producer.enqueueMany(jobs)) ids.push(r.jobId);
    }
    return ids;
  }
}

/** Two runs of one job that overlap in time (start–end), in one process or two. */
export function overlappingRuns(lines: readonly LedgerLine[]): string[] {
  const open = new Map<string, LedgerLine>();
  const runs = new Map<string, { pid: string; start: number; end: number }[]>();
  for (const l of lines) {
    const attempt = `${l.jobId} ${l.pid} ${l.attempt}`;
    if (l.kind === 'S') open.set(attempt, l);
    else {
      const s = open.get(attempt);
      open.delete(attempt);
      if (s) runs.set(l.jobId, [...(runs.get(l.jobId) ?? []), { pid: l.pid, start: s.at, end: l.at }]);
    }
  }
  // A start that never completed ran until the ledger's end (or its process's death).
  const last = lines.at(-1)?.at ?? 0;
  for (const s of open.values())
    runs.set(s.jobId, [...(runs.get(s.jobId) ?? []), { pid: s.pid, start: s.at, end: last }]);
  const out: string[] = [];
  for (const [jobId, rs] of runs) {
    rs.sort((a, b) => a.start - b.start);
    for (let i = 1; i < rs.length; i++)
      if (rs[i]!.start < rs[i - 1]!.end)
        out.push(`${jobId}: pid ${rs[i]!.pid} started at ${rs[i]!.start} while pid ${rs[i - 1]!.pid} ran it`);
  }
  return out;
}

/**
 * A job longer than the session timeout through rebalances (issue 25, defect 2): `longJobs` jobs of
 * `longMs` each start on worker A; a second worker joins while they run, so the group waits for A's
 * drain — longer than `sessionTimeoutMs` — while A heartbeats; later a third joins while a second
 * round of long jobs runs. Short jobs of other keys flow throughout. Settings as docs/guarantees.md
 * tells a user of long jobs: `jobTimeoutMs` and `rebalanceTimeoutMs` above the longest job, session
 * and heartbeat at their defaults in the full size. Verdict: each long job ran once (no second run
 * started while the first ran, none re-ran after it), no two runs of a key overlapped, nothing lost,
 * and the drain did outlast the session (else the run proved nothing).
 */
export async function longJobScenario(
  s: ChaosStack,
  o: {
    longMs: number;
    longJobs: number;
    sessionTimeoutMs: number;
    heartbeatIntervalMs: number;
    keys: number;
    waitMs?: number;
  },
): Promise<Verdict> {
  const topic = chaosTopicName('longjob');
  await createJobTopics({ brokers: s.brokers }, { topic, partitions: 4, tierDelays: [] });
  const timeout = o.longMs + 10_000;
  const fleet = new ChaosFleet(s, {
    ...{ topic, groupId: `${topic}-g`, concurrency: 4, minMs: 2, maxMs: 6, longMs: o.longMs },
    ...{ sessionTimeoutMs: o.sessionTimeoutMs, heartbeatIntervalMs: o.heartbeatIntervalMs },
    ...{ rebalanceTimeoutMs: timeout, jobTimeoutMs: timeout, shutdownTimeoutMs: timeout, inPlace: 0 },
  });
  const feed = new KeyedFeed(await paymentProducer(s, topic));
  const t0 = Date.now();
  const keys = Array.from({ length: o.keys }, (_, k) => `acct-${k}`);
  const ids: string[] = [];
  const lines = () => fleet.read();
  const startedBy = (id: string, l: readonly LedgerLine[]) => l.some((x) => x.kind === 'S' && x.jobId === id);
  let feeding = true;
  const flow = (async () => {
    while (feeding) {
      ids.push(...(await feed.enqueue(keys.slice(o.longJobs))));
      await sleep(500);
    }
  })();
  const failures: string[] = [];
  const joins: { pid: string; at: number }[] = [];
  const join = () => {
    const w = fleet.start();
    joins.push({ pid: String(w.pid), at: Date.now() });
    return w;
  };
  const longIds: string[] = [];
  const longRound = async (then: () => ChildProcess) => {
    const round = await feed.enqueue(keys.slice(0, o.longJobs), () => 'long');
    longIds.push(...round);
    ids.push(...round);
    const started = () => {
      const l = lines();
      return round.every((id) => startedBy(id, l));
    };
    if (!(await waitFor(started, 60_000))) failures.push('the long jobs did not start');
    await sleep(1000);
    then();
    const roundDone = () => {
      const done = new Set(completedRuns(lines()).map((r) => r.jobId));
      return round.every((id) => done.has(id));
    };
    if (!(await waitFor(roundDone, o.longMs * 3))) failures.push('the long jobs did not complete');
  };
  join();
  await longRound(join); // B joins while A runs the long jobs
  await sleep(5000);
  await longRound(join); // C joins while A and B run the second round
  await sleep(5000);
  feeding = false;
  await flow;
  const done = () => new Set(completedRuns(lines()).map((r) => r.jobId));
  await waitFor(() => {
    const d = done();
    return ids.every((id) => d.has(id));
  }, o.waitMs ?? 120_000);
  const seconds = (Date.now() - t0) / 1000;
  await fleet.killAll();
  const admin = createKafka({ brokers: s.brokers, clientId: 'strand-chaos' }).admin();
  await admin.connect();
  await admin.deleteTopics({ topics: [topic, `${topic}.dlq`] }).catch(() => undefined);
  await admin.disconnect();

  const all = lines();
  const d = done();
  const starts = (id: string) => all.filter((l) => l.kind === 'S' && l.jobId === id).length;
  // How long each joiner waited for its first job: the drain of the members it joined.
  const firstStart = (pid: string) => all.find((l) => l.kind === 'S' && l.pid === pid)?.at;
  const drains = joins.slice(1).map((j) => (firstStart(j.pid) ?? Number.NaN) - j.at);
  const figures = {
    jobs: ids.length,
    longJobs: longIds.length,
    longMs: o.longMs,
    sessionTimeoutMs: o.sessionTimeoutMs,
    completed: ids.filter((id) => d.has(id)).length,
    lost: ids.filter((id) => !d.has(id)).length,
    longJobStarts: longIds.reduce((n, id) => n + starts(id), 0),
    overlappingRuns: overlappingRuns(all).length,
    orderViolations: keyOrderViolations(all).length,
    joinerWaitMs: drains.map((ms) => Math.round(ms)),
    seconds: Math.round(seconds),
  };
  if (figures.lost !== 0) failures.push(`${figures.lost} jobs never completed`);
  if (figures.longJobStarts !== longIds.length)
    failures.push(`${figures.longJobStarts} runs of ${longIds.length} long jobs (each must run once)`);
  if (figures.overlappingRuns !== 0)
    failures.push(`overlapping runs: ${overlappingRuns(all).slice(0, 3).join('; ')}`);
  if (figures.orderViolations !== 0) failures.push(`${figures.orderViolations} keys out of order`);
  if (!drains.some((ms) => ms > o.sessionTimeoutMs))
    failures.push(`no drain outlasted the session (${drains.join(', ')} ms): the run proved nothing`);
  return { scenario: 'long-job', passed: failures.length === 0, figures, failures };
}

/**
 * A long strict-order release under load (issue 25, defect 4): one job-topic partition; the head of
 * key `acct-hot` fails once into a tier, `parked` jobs of that key park behind it, and `others` jobs
 * of 200 other keys flow at `rate` meanwhile. When the head succeeds the release runs the parked
 * jobs one by one; a third of the way in, its owner is SIGKILLed and the other member resumes it.
 * Verdict: nothing lost or dead-lettered, strict order held (no job of a key started before every
 * earlier one completed), the other keys kept completing during the release (largest gap, the
 * takeover aside, under `maxGapMs`) and the group's commit moved during it (a release must not pin
 * the partition).
 */
export async function releaseUnderLoadScenario(
  s: ChaosStack,
  o: { parked: number; others: number; rate: number; tierMs: number; maxGapMs: number; waitMs?: number },
): Promise<Verdict> {
  const topic = chaosTopicName('release');
  const groupId = `${topic}-g`;
  await createJobTopics({ brokers: s.brokers }, { topic, partitions: 1, tierDelays: [o.tierMs] });
  const fleet = new ChaosFleet(s, {
    ...{ topic, groupId, concurrency: 16, minMs: 5, maxMs: 15, tiers: [o.tierMs], inPlace: 0 },
    ...{ maxAttempts: 5, retryOrdering: 'strict', sessionTimeoutMs: 6000 },
  });
  const feed = new KeyedFeed(await paymentProducer(s, topic));
  const commits = await watchCommits(s, groupId, topic);
  const t0 = Date.now();
  const failures: string[] = [];
  fleet.start();
  fleet.start();
  const hot = 'acct-hot';
  const [head] = await feed.enqueue([hot], () => 'fail-times-1');
  let lines: LedgerLine[] = [];
  const refresh = () => {
    lines = fleet.read();
    return lines;
  };
  if (!(await waitFor(() => refresh().some((l) => l.jobId === head && l.kind === 'S'), 60_000)))
    failures.push('the head never started');
  const hotIds = await feed.enqueue(Array.from({ length: o.parked }, () => hot));
  // The other keys flow at `rate` from now until `others` are enqueued.
  const otherIds: string[] = [];
  const flow = (async () => {
    const perTick = Math.max(1, Math.round(o.rate / 10));
    while (otherIds.length < o.others) {
      const tick = Date.now();
      const n = Math.min(perTick, o.others - otherIds.length);
      const keys = Array.from({ length: n }, (_, i) => `acct-${(otherIds.length + i) % 200}`);
      otherIds.push(...(await feed.enqueue(keys)));
      await sleep(Math.max(0, 100 - (Date.now() - tick)));
    }
  })();
  const completedAt = (id: string | undefined) =>
    lines.find((l) => l.kind === 'C' && l.jobId === id)?.at ?? Number.NaN;
  await waitFor(() => {
    refresh();
    return Number.isFinite(completedAt(head));
  }, 120_000);
  const releaseAt = completedAt(head);
  const committedAtRelease = commits.last.get(0) ?? -1;
  const hotDone = () => new Set(lines.filter((l) => l.kind === 'C' && l.key === hot).map((l) => l.jobId));
  // The kill, a third of the way into the release.
  let killAt = Number.NaN;
  let committedBeforeKill = -1;
  const third = () => {
    refresh();
    return hotDone().size >= o.parked / 3;
  };
  if (await waitFor(third, o.waitMs ?? 300_000)) {
    committedBeforeKill = commits.last.get(0) ?? -1;
    const owner = lines.filter((l) => l.key === hot).at(-1)?.pid;
    const victim = fleet.alive.find((c) => String(c.pid) === owner);
    if (victim) {
      killAt = Date.now();
      await fleet.kill(victim, 'SIGKILL');
      fleet.start();
    } else failures.push('no owner of the release to kill');
  } else failures.push('the release did not get a third of the way');
  await flow;
  const all = [head!, ...hotIds, ...otherIds];
  const isDone = () => {
    const d = new Set(
      refresh()
        .filter((l) => l.kind === 'C')
        .map((l) => l.jobId),
    );
    return all.every((id) => d.has(id));
  };
  await waitFor(isDone, o.waitMs ?? 300_000, 2000);
  const seconds = (Date.now() - t0) / 1000;
  await fleet.killAll();
  await commits.stop();
  const admin = createKafka({ brokers: s.brokers, clientId: 'strand-chaos' }).admin();
  await admin.connect();
  const dlq = await admin.fetchTopicOffsets(`${topic}.dlq`);
  await admin
    .deleteTopics({ topics: [topic, `${topic}.retry.1`, `${topic}.dlq`, `${topic}.parked`] })
    .catch(() => undefined);
  await admin.disconnect();

  refresh();
  const done = new Set(lines.filter((l) => l.kind === 'C').map((l) => l.jobId));
  const firstDone = new Map<string, number>();
  for (const l of lines) if (l.kind === 'C' && !firstDone.has(l.jobId)) firstDone.set(l.jobId, l.at);
  const releaseEnd = Math.max(...hotIds.map((id) => firstDone.get(id) ?? Number.NaN));
  const hotStarts = new Map<string, number>();
  for (const l of lines)
    if (l.kind === 'S' && l.key === hot && !hotStarts.has(l.jobId)) hotStarts.set(l.jobId, l.at);
  // The other keys during the release: the largest gap between their completions, the takeover
  // (from the kill to the new owner's first start) aside.
  const takeoverEnd = lines.find((l) => l.kind === 'S' && l.at > killAt)?.at ?? killAt;
  const otherEnds = lines
    .filter((l) => l.kind === 'C' && l.key !== hot && l.at >= releaseAt && l.at <= releaseEnd)
    .map((l) => l.at)
    .sort((a, b) => a - b);
  let maxGapMs = 0;
  for (let i = 1; i < otherEnds.length; i++) {
    const [a, b] = [otherEnds[i - 1]!, otherEnds[i]!];
    if (a <= takeoverEnd && b >= killAt) continue;
    maxGapMs = Math.max(maxGapMs, b - a);
  }
  const deadLettered = dlq.reduce((n, p) => n + Number(p.high), 0);
  const figures = {
    parked: o.parked,
    others: otherIds.length,
    parkedAtRelease: hotIds.filter((id) => (hotStarts.get(id) ?? Number.POSITIVE_INFINITY) >= releaseAt)
      .length,
    completed: all.filter((id) => done.has(id)).length,
    lost: all.filter((id) => !done.has(id)).length,
    deadLettered,
    strictStartViolations: strictStartViolations(lines).length,
    orderViolations: keyOrderViolations(lines).length,
    releaseSeconds: Math.round((releaseEnd - releaseAt) / 100) / 10,
    otherKeysDoneDuringRelease: otherEnds.length,
    otherKeysMaxGapMs: maxGapMs,
    takeoverMs: Number.isFinite(killAt) ? takeoverEnd - killAt : null,
    commitMovedBeforeKill: committedBeforeKill - committedAtRelease,
    seconds: Math.round(seconds),
  };
  if (figures.lost !== 0) failures.push(`${figures.lost} jobs never completed`);
  if (deadLettered !== 0) failures.push(`${deadLettered} jobs dead-lettered`);
  if (figures.strictStartViolations !== 0)
    failures.push(`strict order: ${strictStartViolations(lines).slice(0, 3).join('; ')}`);
  if (figures.orderViolations !== 0) failures.push(`${figures.orderViolations} keys out of order`);
  if (figures.parkedAtRelease < o.parked * 0.9)
    failures.push(`only ${figures.parkedAtRelease} of ${o.parked} jobs were parked when the release began`);
  if (maxGapMs > o.maxGapMs)
    failures.push(`the other keys stood still for ${maxGapMs} ms during the release (bound ${o.maxGapMs})`);
  if (figures.commitMovedBeforeKill <= 0) failures.push('the commit did not move during the release');
  return { scenario: 'release-under-load', passed: failures.length === 0, figures, failures };
}
