/**
 * `npm run bench:noisy-tenant`: one tenant's bulk import next to small tenants (issue 29). Per run,
 * a fresh topic (12 partitions) gets `--bulk` jobs of the tenant "bulk" (200,000 over 1,000 keys);
 * a Strand worker (dist/, its own process: concurrency 64, key order, the default buffer) starts on
 * it, and `--small-after-ms` (5,000) after it has its partitions `--tenants` small tenants enqueue
 * `--per-tenant` jobs each (20 × 500, interleaved, 10 keys of their own each), so their records
 * land behind what is left of the backlog. Each job does `--work-ms` (10) of work (a sleep, as a
 * downstream call): with a no-op handler the intake, not the handlers, is the bottleneck, and no
 * scheduler can start a record it has not read yet. Measured per run: the small tenants' enqueue →
 * start (p50/p99/max) and the total throughput (every job, first start to last). Sides, in turn
 * every round:
 * - `on`: `tenant` = the job's memo, fairness on (deferral and round robin; `--max-deferred` sets
 *   `limits.maxDeferred`, default 10,000 per partition);
 * - `off`: the same tenant function with `limits: { fair: false }` (oldest first);
 * - `none` (only with `--sides`): no tenant function at all (the worker as it was before tenants).
 * Targets (issue 29): the small tenants' p99 enqueue → start < 1 s with fairness on, and
 * throughput on ≥ 0.9 × off (medians of the rounds, same run). Writes
 * bench/results/noisy-tenant[-<bulk>][-max-deferred-<n>].json with the load average before and
 * after every run; `--cpu-prof <dir>` profiles every worker run.
 *
 *   npm run bench:noisy-tenant [-- --bulk 200000 --tenants 20 --per-tenant 500 --rounds 3 --max-deferred 20000]
 */
import { loadavg } from 'node:os';
import { parseArgs } from 'node:util';
import { createKafka } from '../src/kafka/client.js';
import { writeResult } from './env.js';
import {
  type BenchStack,
  benchProducer,
  benchStack,
  benchTopic,
  fill,
  payment,
  round,
  stats,
} from './lib.js';
import { STRAND_DEFAULTS, strandRun } from './scenarios.js';

const { values } = parseArgs({
  options: {
    bulk: { type: 'string' },
    tenants: { type: 'string' },
    'per-tenant': { type: 'string' },
    rounds: { type: 'string' },
    partitions: { type: 'string' },
    sides: { type: 'string' },
    'work-ms': { type: 'string' },
    'small-after-ms': { type: 'string' },
    'max-deferred': { type: 'string' },
    /** A V8 CPU profile of every worker run into this folder (`node --cpu-prof`; bench/cpuprofile.ts reads it). */
    'cpu-prof': { type: 'string' },
  },
});
const bulk = Number(values.bulk ?? 200_000);
const tenants = Number(values.tenants ?? 20);
const perTenant = Number(values['per-tenant'] ?? 500);
const rounds = Number(values.rounds ?? 3);
const partitions = Number(values.partitions ?? 12);
const workMs = Number(values['work-ms'] ?? 10);
const smallAfterMs = Number(values['small-after-ms'] ?? 5000);
const maxDeferred = values['max-deferred'] === undefined ? undefined : Number(values['max-deferred']);
const SIDES = {
  on: { tenantFromMemo: true, ...(maxDeferred === undefined ? {} : { limits: { maxDeferred } }) },
  off: { tenantFromMemo: true, limits: { fair: false } },
  none: {},
} as const;
type Side = keyof typeof SIDES;
const sides = (values.sides ?? 'on,off').split(',') as Side[];
for (const [name, n] of Object.entries({
  bulk,
  tenants,
  perTenant,
  rounds,
  partitions,
  workMs,
  smallAfterMs,
}))
  if (!Number.isInteger(n) || n < (name === 'workMs' || name === 'smallAfterMs' ? 0 : 1)) {
    console.error(`--${name}: expected a positive integer, got ${n}`);
    process.exit(2);
  }
if (!sides.includes('on') || sides.some((x) => !(x in SIDES))) {
  console.error(`--sides: a list of ${Object.keys(SIDES).join(', ')} with "on" in it, got ${values.sides}`);
  process.exit(2);
}
const small = tenants * perTenant;
const KEYS_PER_TENANT = 10;

/** The small tenants' jobs, tenant by tenant in turn (t0, t1, ..., t19, t0, ...), keys of their own. */
async function enqueueSmall(s: BenchStack, topic: string): Promise<void> {
  const producer = await benchProducer(s, topic);
  const jobs = Array.from({ length: small }, (_, i) => {
    const tenant = `tenant-${String(i % tenants).padStart(2, '0')}`;
    const n = Math.floor(i / tenants);
    const data = { ...payment(i, 1, tenant), accountId: `${tenant}-k${n % KEYS_PER_TENANT}` };
    return { key: data.accountId, data };
  });
  for (let i = 0; i < jobs.length; i += 500) await producer.enqueueMany(jobs.slice(i, i + 500));
  await producer.disconnect();
}

async function deleteTopic(s: BenchStack, topic: string): Promise<void> {
  const admin = createKafka(s.conn).admin();
  await admin.connect();
  const topics = (await admin.listTopics()).filter((t) => t.startsWith(topic));
  await admin.deleteTopics({ topics }).catch(() => undefined);
  await admin.disconnect();
}

interface Run {
  side: Side;
  round: number;
  jobsPerSecond: number;
  seconds: number;
  smallP50Ms: number;
  smallP99Ms: number;
  smallMaxMs: number;
  bulkStartedBeforeLastSmall: number | null;
  fillSeconds: number;
  loadAverage1m: { before: number; after: number };
}

const s = await benchStack();
const runs: Run[] = [];
const load = () => round(loadavg()[0]!, 2);
for (let r = 1; r <= rounds; r++) {
  for (const side of sides) {
    const topic = await benchTopic(s, `noisy-${side}`, partitions);
    const fillMs = await fill(s, topic, bulk, 1000, () => 'bulk');
    const before = load();
    let sent: Promise<void> | undefined;
    const result = await strandRun(
      s,
      topic,
      bulk + small,
      'tenants',
      { ...STRAND_DEFAULTS, ...SIDES[side], smallJobs: small, workMs },
      {
        timeoutMs: 30 * 60_000,
        ...(values['cpu-prof']
          ? {
              nodeArgs: [
                '--cpu-prof',
                '--cpu-prof-dir',
                values['cpu-prof'],
                '--cpu-prof-name',
                `${side}-${r}.cpuprofile`,
              ],
            }
          : {}),
        onReady: () => {
          sent = new Promise((r) => setTimeout(r, smallAfterMs)).then(() => enqueueSmall(s, topic));
        },
      },
    );
    await sent;
    const lat = result.smallEnqueueToStartMs as { p50: number; p99: number; max: number };
    const run: Run = {
      side,
      round: r,
      jobsPerSecond: round(result.jobsPerSecond as number),
      seconds: round(result.seconds, 2),
      smallP50Ms: lat.p50,
      smallP99Ms: lat.p99,
      smallMaxMs: lat.max,
      bulkStartedBeforeLastSmall: (result.bulkStartedBeforeLastSmall as number | null) ?? null,
      fillSeconds: round(fillMs / 1000, 1),
      loadAverage1m: { before, after: load() },
    };
    runs.push(run);
    console.error(JSON.stringify(run));
    await deleteTopic(s, topic);
  }
}

const of = (side: Side, f: (r: Run) => number, digits = 0) =>
  stats(runs.filter((x) => x.side === side).map(f), digits);
const bySide = Object.fromEntries(
  sides.map((side) => [
    side,
    {
      jobsPerSecond: of(side, (x) => x.jobsPerSecond),
      smallEnqueueToStartMs: {
        p50: of(side, (x) => x.smallP50Ms),
        p99: of(side, (x) => x.smallP99Ms),
        max: of(side, (x) => x.smallMaxMs),
      },
      bulkStartedBeforeLastSmall: of(side, (x) => x.bulkStartedBeforeLastSmall ?? Number.NaN),
    },
  ]),
);
const onTp = of('on', (x) => x.jobsPerSecond).median;
const offTp = sides.includes('off') ? of('off', (x) => x.jobsPerSecond).median : undefined;
const noneTp = sides.includes('none') ? of('none', (x) => x.jobsPerSecond).median : undefined;
const onP99 = of('on', (x) => x.smallP99Ms).median;
const ratio = (a: number, b: number | undefined) => (b ? round(a / b, 3) : null);
const out = {
  scenario: 'noisy-tenant',
  bulkJobs: bulk,
  smallTenants: tenants,
  jobsPerSmallTenant: perTenant,
  partitions,
  keys: `bulk: 1000; each small tenant: ${KEYS_PER_TENANT} of its own`,
  worker: `one process: concurrency 64, key order, maxBufferedJobs 1000 (defaults); handler: ${workMs} ms of work (a sleep)`,
  smallEnqueuedAfterMs: smallAfterMs,
  maxDeferred: maxDeferred ?? '10000 (default)',
  rounds,
  bySide,
  throughputOnOverOff: ratio(onTp, offTp),
  throughputOnOverNone: ratio(onTp, noneTp),
  target: "fairness on: the small tenants' p99 enqueue → start < 1000 ms; throughput on >= 0.9 × off",
  met: onP99 < 1000 && (offTp === undefined || onTp >= 0.9 * offTp),
  runs,
};
const name = `noisy-tenant${bulk === 200_000 ? '' : `-${bulk}`}${maxDeferred === undefined ? '' : `-max-deferred-${maxDeferred}`}`;
const file = writeResult(name, out);
console.log(JSON.stringify(out, null, 2));
console.log(`wrote ${file}`);
