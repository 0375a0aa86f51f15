import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { longJobScenario, releaseUnderLoadScenario } from '../../chaos/core-defects.js';
import { exactlyOnceScenario } from '../../chaos/exactly-once.js';
import { outboxScenario } from '../../chaos/outbox.js';
import { parkingTakeoverScenario } from '../../chaos/parking-takeover.js';
import { badInputScenario, crashScenario, strictOrderScenario, type Verdict } from '../../chaos/scenarios.js';
import { chaosSizes } from '../../chaos/sizes.js';
import { tracedScenario } from '../../chaos/traces.js';
import { stack, uniqueName } from '../support/helpers.js';
import { skipWhenMissing } from '../support/optional.js';
import { findPostgresBin } from '../support/postgres-server.js';
import { needRedis } from '../support/redis.js';

// The quick sizes of `npm run test:chaos -- --quick`; the verdict's failures say what broke. Broker failover
// (its own 3-node cluster) runs only there: in one CI run its workers stalled after a
// leader kill 5 s into a fresh cluster, an open problem recorded in issue 10, and a CI run must
// not depend on it.
// Every topic a scenario makes carries this run's tag, so what they leave (topics, groups, registry
// subjects, the status records of killed workers) is deleted after this file like any test's.
process.env.STRAND_CHAOS_TAG = uniqueName('t');

// Each scenario's worker traces, checked with the simulation's invariants (chaos/traces.ts): kept
// under chaos/results/run-<tag>-test/traces/<scenario>/ when the scenario fails, removed when it passes.
const traceRoot = join(
  import.meta.dirname,
  '../../chaos/results',
  `run-${process.env.STRAND_CHAOS_TAG}-test`,
);
async function traced(name: string, scenario: () => Promise<Verdict>): Promise<Verdict> {
  const dir = join(traceRoot, 'traces', name);
  const v = await tracedScenario(dir, scenario);
  const t = v.figures.traces as { events: number; violations: number } | undefined;
  console.info(`traces of ${name}: ${JSON.stringify(t)}`);
  // Traces were written and read (a scenario whose workers traced nothing would prove nothing).
  expect(t?.events ?? 0).toBeGreaterThan(0);
  if (v.passed) rmSync(dir, { recursive: true, force: true });
  return v;
}

describe('chaos (reduced size)', () => {
  // Timeouts: each scenario's own waits (chaosSizes.quick.*.waitMs) end first, so a failure is reported
  // by its verdict, not by vitest's timeout.
  it('worker crashes: 3 workers, SIGKILL and restart, nothing lost, order held, no duplicate side effect', async ({
    skip,
  }) => {
    needRedis({ skip }); // the idempotency store and the side-effect list
    const v = await traced('crash', () => crashScenario(stack(), chaosSizes.quick.crash));
    console.info(JSON.stringify(v.figures));
    expect(v.failures).toEqual([]);
    // Every kill was made, unless every job had completed before the next one was due (a fast machine).
    expect(v.figures.kills).toBeGreaterThanOrEqual(1);
    expect(Number(v.figures.kills) + Number(v.figures.killsSkippedAllDone)).toBe(
      chaosSizes.quick.crash.kills,
    );
    if (Number(v.figures.killsSkippedAllDone) > 0) expect(v.figures.lost).toBe(0);
    expect(v.passed).toBe(true);
  }, 300_000);

  it('bad input at volume: every bad record dead-lettered with its reason, every valid job done, RSS bounded', async () => {
    const v = await traced('badInput', () => badInputScenario(stack(), chaosSizes.quick.badInput));
    console.info(JSON.stringify(v.figures));
    expect(v.failures).toEqual([]);
    expect(v.passed).toBe(true);
  }, 300_000);

  it('strict key order: keys parked behind jobs in retry tiers through SIGKILLs and rebalances, nothing lost, no job of a key started early', async () => {
    const v = await traced('strictOrder', () => strictOrderScenario(stack(), chaosSizes.quick.strictOrder));
    console.info(JSON.stringify(v.figures));
    expect(v.failures).toEqual([]);
    expect(v.figures.kills).toBeGreaterThanOrEqual(1);
    expect(v.figures.retriedJobs).toBeGreaterThan(0);
    expect(v.passed).toBe(true);
  }, 300_000);

  it('parking takeover: a parking partition past 200,000 records read whole by the new owner, keys parked and released as they were', async () => {
    const v = await traced('parkingTakeover', () =>
      parkingTakeoverScenario(stack(), chaosSizes.quick.parkingTakeover),
    );
    console.info(JSON.stringify(v.figures));
    expect(v.failures).toEqual([]);
    expect(v.figures.parkedAtKill).toBeGreaterThan(0);
    expect(v.passed).toBe(true);
  }, 300_000);

  it('long jobs through rebalances: a drain longer than the session, each long job run once, no two runs of a key at once', async () => {
    const v = await traced('longJob', () => longJobScenario(stack(), chaosSizes.quick.longJob));
    console.info(JSON.stringify(v.figures));
    expect(v.failures).toEqual([]);
    expect(v.passed).toBe(true);
  }, 300_000);

  it('a long strict-order release under load: the other keys keep flowing, the commit moves, the release resumes after a SIGKILL', async () => {
    const v = await traced('releaseUnderLoad', () =>
      releaseUnderLoadScenario(stack(), chaosSizes.quick.releaseUnderLoad),
    );
    console.info(JSON.stringify(v.figures));
    expect(v.failures).toEqual([]);
    expect(v.figures.takeoverMs).not.toBeNull();
    expect(v.passed).toBe(true);
  }, 300_000);
  it('transactional outbox: writers commit and roll back, relays SIGKILLed, PostgreSQL restarted; Kafka holds exactly the committed jobs in commit order, side effects once', async ({
    skip,
  }) => {
    needRedis({ skip }); // the idempotency store and the side-effect list
    // A PostgreSQL of its own, restarted mid-run: started with initdb/pg_ctl.
    skipWhenMissing(
      { skip },
      findPostgresBin() ? undefined : 'no initdb/pg_ctl to start a PostgreSQL to restart',
    );
    const v = await traced('outbox', () => outboxScenario(stack(), chaosSizes.quick.outbox));
    console.info(JSON.stringify(v.figures));
    expect(v.failures).toEqual([]);
    expect(v.figures.relayKills).toBeGreaterThanOrEqual(1);
    expect(v.figures.postgresRestarts).toBe(1);
    expect(v.figures.rolledBackTransactions).toBeGreaterThan(0);
    expect(v.passed).toBe(true);
  }, 300_000);

  it('exactly-once pipeline: payments → ledger → notify through SIGKILLs, each follow-up once and in key order; without exactlyOnce, duplicates', async () => {
    const v = await traced('exactlyOnce', () => exactlyOnceScenario(stack(), chaosSizes.quick.exactlyOnce));
    console.info(JSON.stringify(v.figures));
    expect(v.failures).toEqual([]);
    const on = v.figures.exactlyOnce as { sigkills: number; duplicated: number };
    const off = v.figures.atLeastOnce as { sigkills: number; duplicated: number };
    expect(on.sigkills).toBeGreaterThanOrEqual(1);
    expect(on.duplicated).toBe(0);
    // The check can fail: the same kills without exactlyOnce duplicate some follow-ups.
    expect(off.duplicated).toBeGreaterThan(0);
    expect(v.passed).toBe(true);
  }, 300_000);
});
