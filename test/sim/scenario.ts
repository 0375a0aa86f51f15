/**
 * What one seed runs: the sizes, the worker options, the model's timings and fault rates, the mix
 * of handler outcomes and the faults. Everything is drawn from the seed.
 */
import type { ModelOptions } from './kafka-model.js';
import { Rng } from './random.js';

export type Behavior =
  | 'ok'
  | 'slow'
  | 'fail'
  | 'non-retriable'
  | 'type-error'
  | 'retry-later'
  | 'retry-later-0'
  | 'classified-later'
  | 'hang-ok'
  | 'hang-fail'
  | 'abortable';

/**
 * What a job does on every run, whatever the per-run draw says: ask to retry later each time (a
 * `RetryLaterError` with a delay, with 0, without `delayMs`, or an error `classify` maps to
 * 'retry-later'), so the retry-later cap and floor are reached; or `slow-first`: its first run is
 * slow and succeeds (a head of line the jobs behind it overtake, filling the offset map).
 */
export type Sticky =
  | 'later-always'
  | 'later-always-0'
  | 'later-always-none'
  | 'later-always-classified'
  | 'slow-first';

export type FaultKind =
  | 'rebalance'
  | 'join'
  | 'leave'
  | 'kill'
  | 'consumer-crash'
  | 'store-outage'
  | 'produce-outage'
  | 'commit-outage'
  | 'registry-outage'
  | 'pause'
  | 'burst';

export interface SeedConfig {
  readonly seed: number;
  readonly partitions: number;
  readonly records: number;
  readonly keys: number;
  readonly nullKeyRate: number;
  readonly undecodableRate: number;
  readonly markerRate: number;
  /** Worker instances running at once (at most). */
  readonly members: number;
  readonly worker: {
    readonly concurrency: number;
    readonly maxBufferedJobs: number;
    readonly maxBufferedBytes: number;
    readonly jobTimeoutMs: number;
    readonly commitIntervalMs: number;
    readonly rebalanceTimeoutMs: number;
    readonly shutdownTimeoutMs: number;
    readonly tiers: number[];
    readonly maxAttempts: number;
    readonly inPlace: number;
    readonly inPlaceBackoff: { baseMs: number; maxMs: number; jitter: number };
    readonly maxRetryLater: number;
    readonly idempotency: { leaseMs: number; retainMs: number } | undefined;
    readonly classify: boolean;
    readonly metadataMaxChars: number | undefined;
    readonly partitionsConsumedConcurrently: number;
    /** `retry.ordering`: 'strict' parks a key behind its job in a retry tier (parking topic). */
    readonly ordering: 'strict' | 'relaxed';
    /** `retry.onDeadKey`: what a dead head does to the jobs parked behind it. */
    readonly onDeadKey: 'release' | 'dead-letter';
  };
  /** Delayed jobs: bucket lengths (besides the 0 s bucket), the share of jobs delayed, the longest delay. */
  readonly delays: { readonly buckets: number[]; readonly rate: number; readonly maxMs: number } | undefined;
  /** Batch handler (a fourth stream): batch shape, and how often a whole call throws. */
  readonly batch:
    | { readonly maxSize: number; readonly maxWaitMs: number; readonly throwRate: number }
    | undefined;
  /**
   * User code that misbehaves (a sixth stream): handlers throwing non-Errors, a `classify` that
   * throws or answers nonsense, an `idempotency.key` that throws for some jobs, event listeners that
   * throw, batch handlers returning malformed results, retry-later delays over the whole number line.
   */
  readonly userFaults?: UserFaults | undefined;
  /**
   * Tenants (an eighth stream): the tenant of a key, weights, per-key/per-tenant limits, and a
   * small `maxDeferred` so the intake defers and reads records back often.
   */
  readonly tenants?: TenantsConfig | undefined;
  readonly model: ModelOptions;
  readonly services: {
    readonly produceLatencyMax: number;
    readonly produceFailRate: number;
    readonly ambiguousProduceRate: number;
    readonly storeLatencyMax: number;
    readonly registryLatencyMax: number;
  };
  readonly behaviors: readonly (readonly [Behavior, number])[];
  /** Per job: the chance it gets a sticky behaviour, and which (weights). */
  readonly stickyRate: number;
  readonly stickies: readonly (readonly [Sticky, number])[];
  /** The first job of every partition is `slow-first`. */
  readonly slowHeads: boolean;
  /** Faults happen in [0, chaosMs); then a quiet period until everything settled. */
  readonly chaosMs: number;
  readonly faults: number;
  readonly faultWeights: readonly (readonly [FaultKind, number])[];
}

/**
 * Scenario switches. `expel`: in some seeds the coordinator's rebalance timeout is shorter than
 * the worker's drain, so a member misses a generation and is expelled (it rejoins when its drain
 * ends); off, the coordinator always waits longer than the drain can take. `pauseSurvivesRejoin`:
 * a partition paused by a batch stays paused after a rejoin, as in kafkajs (its subscription state
 * outlives rebalances; only a consumer crash resets it); off, every join resumes it.
 */
export const scenarioSettings = { expel: true, pauseSurvivesRejoin: true };

export interface UserFaults {
  /** Share of handler runs that throw something odd instead of their planned outcome. */
  readonly rate: number;
  readonly classifyThrows: boolean;
  /** `idempotency.key` throws for jobs whose rid is 3 mod 7. */
  readonly keyThrows: boolean;
  readonly listenerThrows: boolean;
  /** Share of batch calls that return a malformed result. */
  readonly malformedRate: number;
  /** RetryLaterError delays drawn over the whole range (0, negative, NaN, ±Infinity, > 2^31). */
  readonly wideDelays: boolean;
}

/**
 * Draws of a sixth stream: user code faults in two seeds of five (the other seeds run as before).
 * A seed with a throwing `classify` has one.
 */
function withUserFaults(c: SeedConfig, x: Rng): SeedConfig {
  if (!x.chance(0.4)) return c;
  const classifyThrows = x.chance(0.5);
  const userFaults: UserFaults = {
    rate: x.pick([0.02, 0.05, 0.15]),
    classifyThrows,
    keyThrows: c.worker.idempotency !== undefined && x.chance(0.5),
    listenerThrows: x.chance(0.5),
    malformedRate: c.batch ? x.pick([0, 0.05, 0.2]) : 0,
    wideDelays: x.chance(0.6),
  };
  return { ...c, userFaults, worker: { ...c.worker, classify: c.worker.classify || classifyThrows } };
}

export interface TenantsConfig {
  /** Tenants t0..t(n-1); key k<i> belongs to t0 when i < bulkKeys (the bulk tenant), else t(i mod n). */
  readonly count: number;
  readonly bulkKeys: number;
  readonly weights: Record<string, number>;
  readonly maxDeferred: number;
  readonly tenantConcurrency: number | undefined;
  readonly tenantRate: string | undefined;
  readonly keyRate: string | undefined;
  readonly fair: boolean;
}

/**
 * What each later stream draws, in the order they apply, each from its own random stream (the
 * label), so a stream added later leaves the draws of the others as they were.
 */
const STREAMS: readonly [(c: SeedConfig, x: Rng) => SeedConfig, number][] = [
  [withPressure, 5],
  [withDelays, 7],
  [withBatches, 9],
  [withOrdering, 10],
  [withUserFaults, 11],
  [withHeartbeats, 14],
  [withTenants, 16],
  [withAllAtOnce, 17],
];

export function seedConfig(seed: number): SeedConfig {
  return STREAMS.reduce((c, [draw, label]) => draw(c, Rng.derive(seed, label)), baseConfig(seed));
}

/**
 * Draws of a ninth stream: in half the seeds with a batch handler under strict key order, every
 * fetched partition is taken at once (such a worker's default: `KeyParking.partitionsTakenAtOnce`),
 * so the intake shares its buffer among more partitions than the 1–3 other seeds take. Other seeds
 * keep their runs.
 */
function withAllAtOnce(c: SeedConfig, x: Rng): SeedConfig {
  const strictBatches = c.batch && c.worker.ordering === 'strict' && c.worker.tiers.length > 0;
  if (!strictBatches || !x.chance(0.5)) return c;
  return {
    ...c,
    worker: { ...c.worker, partitionsConsumedConcurrently: 64 },
    model: { ...c.model, partitionsConsumedConcurrently: 64 },
  };
}

/** Draws of an eighth stream: tenants and limits in about a third of the seeds (not with batches). */
function withTenants(c: SeedConfig, x: Rng): SeedConfig {
  if (c.batch || !x.chance(0.35)) return c;
  const count = x.int(2, 6);
  const weights: Record<string, number> = {};
  for (let i = 0; i < count; i++) if (x.chance(0.4)) weights[`t${i}`] = x.pick([0.5, 2, 3, 4]);
  const limited = x.chance(0.4);
  return {
    ...c,
    tenants: {
      count,
      bulkKeys: Math.max(1, Math.floor(c.keys * x.pick([0.3, 0.6, 0.9]))),
      weights,
      maxDeferred: x.pick([0, 3, 10, 50, 10_000]),
      tenantConcurrency: x.chance(0.4) ? x.int(1, 4) : undefined,
      tenantRate: limited && x.chance(0.6) ? x.pick(['20/s', '100/s', '5/100ms']) : undefined,
      keyRate: limited && x.chance(0.5) ? x.pick(['10/s', '50/s']) : undefined,
      fair: !x.chance(0.1),
    },
  };
}

/**
 * Draws of a seventh stream: the session (1.5 to 4 s: above the intake's 1 s heartbeat while it
 * waits for room, as Kafka's 6 s minimum is above it) and a heartbeat interval of a third of it or
 * less; in a quarter of the seeds long jobs: `jobTimeoutMs` and the drain (`rebalanceTimeoutMs`)
 * longer than the session, so drains outlast it (issue 25, defect 2).
 */
function withHeartbeats(c: SeedConfig, x: Rng): SeedConfig {
  const sessionTimeoutMs = x.int(1500, 4000);
  const model = {
    ...c.model,
    sessionTimeoutMs,
    heartbeatIntervalMs: x.int(10, Math.floor(sessionTimeoutMs / 3)),
  };
  if (!x.chance(0.25)) return { ...c, model };
  const jobTimeoutMs = x.int(sessionTimeoutMs, 2 * sessionTimeoutMs);
  const rebalanceTimeoutMs = x.int(jobTimeoutMs, jobTimeoutMs + sessionTimeoutMs);
  const floor = Math.max(rebalanceTimeoutMs + 5000, c.batch ? 3 * jobTimeoutMs : 0);
  return {
    ...c,
    worker: { ...c.worker, jobTimeoutMs, rebalanceTimeoutMs },
    model: { ...model, groupRebalanceTimeoutMs: Math.max(model.groupRebalanceTimeoutMs, floor) },
  };
}

/**
 * Draws of a fifth stream: `retry.ordering` strict (the default) in four seeds of five, relaxed in
 * the others (as every seed ran before strict order existed: their runs are unchanged), and
 * `retry.onDeadKey` 'dead-letter' in about a third of the strict ones. Some strict seeds with
 * retry tiers fail jobs into them twice as often and keep one to three keys, so keys park, pile up
 * and are released. Strict seeds with retry tiers have the co-partitioned assignment (workers prefer
 * it: the worker that ends a head owns its key's partition and releases it at once) in seven of
 * ten, round robin (a group with older members) in the others; the other seeds keep round robin
 * (seeds that cannot park run as before).
 */
function withOrdering(c: SeedConfig, x: Rng): SeedConfig {
  const strict = x.chance(0.8);
  const deadLetter = x.chance(0.35);
  const w = c.worker;
  if (!strict) return { ...c, worker: { ...w, ordering: 'relaxed', onDeadKey: 'release' } };
  const hot = w.tiers.length > 0 && x.chance(0.4);
  const coPartitioned = w.tiers.length > 0 && x.chance(0.7);
  return {
    ...c,
    model: { ...c.model, coPartitioned },
    ...(hot
      ? {
          keys: Math.min(c.keys, x.int(1, 3)),
          behaviors: c.behaviors.map(([b, n]) => [b, b === 'fail' ? 2 * n : n] as const),
        }
      : {}),
    worker: { ...w, ordering: 'strict', onDeadKey: deadLetter ? 'dead-letter' : 'release' },
  };
}

/**
 * Draws of a fourth stream: a batch handler instead of the job handler in about two seeds of five,
 * batches of 1 to 25 jobs closed after 0 to 40 ms, and calls that throw (every job of the batch
 * fails) in some of them.
 */
function withBatches(c: SeedConfig, x: Rng): SeedConfig {
  if (!x.chance(0.4)) return c;
  // A call lasts as long as its slowest job (up to 3 × jobTimeoutMs): a coordinator that expels
  // every member whose drain outlasts a call would keep the group rebalancing for good (as a Java
  // consumer past max.poll.interval.ms does), so an expelling coordinator waits at least that long.
  const floor = 3 * c.worker.jobTimeoutMs;
  return {
    ...c,
    model: { ...c.model, groupRebalanceTimeoutMs: Math.max(c.model.groupRebalanceTimeoutMs, floor) },
    batch: {
      maxSize: x.chance(0.2) ? 1 : x.int(2, 25),
      maxWaitMs: x.pick([0, 1, 5, 20, 40]),
      throwRate: x.pick([0, 0, 0.05, 0.2]),
    },
  };
}

/**
 * Draws of a third stream: delayed jobs in about a third of the seeds, through two to four bucket
 * lengths of 20 ms to 1.2 s, with delays up to three times the largest.
 */
function withDelays(c: SeedConfig, x: Rng): SeedConfig {
  if (!x.chance(0.35)) return c;
  const buckets: number[] = [];
  let ms = x.int(20, 80);
  for (let i = x.int(2, 4); i > 0; i--) {
    buckets.push(ms);
    ms *= x.int(2, 5);
  }
  const largest = buckets[buckets.length - 1]!;
  return { ...c, delays: { buckets, rate: 0.1 + x.next() * 0.5, maxMs: x.int(largest, 3 * largest) } };
}

/**
 * Draws of a second stream (so the base draws of a seed stay as they were): jobs that ask to run
 * later on every attempt with small `maxRetryLater`, and offset-map pressure: a metadata limit of a
 * few characters (a map of 0 to 72 offsets), one or two partitions, a buffer larger than the
 * map, and slow heads that many fast jobs of other keys overtake.
 */
function withPressure(c: SeedConfig, x: Rng): SeedConfig {
  const later = x.chance(0.25);
  const mapPressure = x.chance(0.15);
  const w = c.worker;
  const worker = {
    ...w,
    maxRetryLater: later && x.chance(0.7) ? x.int(0, 3) : w.maxRetryLater,
    ...(mapPressure
      ? {
          concurrency: x.int(3, 8),
          maxBufferedJobs: x.int(30, 80),
          maxBufferedBytes: x.int(6000, 20000),
          metadataMaxChars: x.pick([4, 7, 8, 10, 11, 14, 15]),
        }
      : {}),
  };
  const stickies: [Sticky, number][] = [
    ['later-always', later ? 3 : 0],
    ['later-always-0', later ? 2 : 0],
    ['later-always-none', later ? 2 : 0],
    ['later-always-classified', later && w.classify ? 2 : 0],
    ['slow-first', mapPressure ? 6 : 1],
  ];
  return {
    ...c,
    ...(mapPressure ? { partitions: x.int(1, 2), records: x.int(40, 70), keys: x.int(4, 8) } : {}),
    worker,
    stickyRate: later || mapPressure ? 0.04 + x.next() * 0.12 : x.chance(0.3) ? 0.03 : 0,
    stickies,
    slowHeads: mapPressure && x.chance(0.7),
  };
}

function baseConfig(seed: number): SeedConfig {
  const r = Rng.derive(seed, 1);
  const calm = r.chance(0.1);
  const tierCount = r.weighted([
    [0, 1],
    [1, 2],
    [2, 3],
    [3, 2],
  ] as const);
  const tiers: number[] = [];
  for (let i = 0; i < tierCount; i++) tiers.push(r.int(20, 150) * (i + 1));
  const rebalanceTimeoutMs = r.int(100, 2000);
  const members = r.chance(0.5) ? 2 : 1;
  const idempotent = r.chance(0.5);
  const classify = r.chance(0.5);
  const failureScale = r.pick([0.3, 1, 1, 2]);
  const partitionsConsumedConcurrently = r.int(1, 3);
  return {
    seed,
    partitions: r.int(1, 4),
    records: r.chance(0.7) ? r.int(10, 30) : r.int(30, 60),
    keys: r.int(2, 8),
    nullKeyRate: r.chance(0.3) ? r.next() * 0.15 : 0,
    undecodableRate: r.chance(0.3) ? 0.02 + r.next() * 0.08 : 0,
    markerRate: r.chance(0.3) ? 0.05 + r.next() * 0.15 : 0,
    members,
    worker: {
      concurrency: r.int(1, 8),
      maxBufferedJobs: r.chance(0.5) ? r.int(1, 8) : r.int(8, 40),
      maxBufferedBytes: r.chance(0.3) ? r.int(80, 400) : r.int(400, 4000),
      jobTimeoutMs: r.int(50, 400),
      commitIntervalMs: r.int(10, 300),
      rebalanceTimeoutMs,
      shutdownTimeoutMs: r.int(50, 1000),
      tiers,
      maxAttempts: r.int(1, 5),
      inPlace: r.int(0, 2),
      inPlaceBackoff: { baseMs: r.int(1, 50), maxMs: r.int(50, 300), jitter: r.pick([0, 0.2, 0.5]) },
      maxRetryLater: r.chance(0.5) ? r.int(0, 4) : 10,
      idempotency: idempotent ? { leaseMs: r.int(100, 1500), retainMs: 3_600_000 } : undefined,
      classify,
      metadataMaxChars: r.chance(0.3) ? r.pick([4, 7, 11, 15, 40, 200]) : undefined,
      partitionsConsumedConcurrently,
      ordering: 'relaxed',
      onDeadKey: 'release',
    },
    model: {
      partitionsConsumedConcurrently,
      maxBatch: r.int(1, 10),
      fetchDelayMax: r.int(0, 10),
      joinDelayMax: r.int(1, 20),
      noticeDelayMax: r.int(0, 50),
      heartbeatIntervalMs: 0,
      commitLatencyMax: r.int(0, 20),
      committedLatencyMax: r.int(0, 10),
      commitFailRate: calm ? 0 : r.pick([0, 0, 0.02, 0.1]),
      ambiguousCommitRate: 0.5,
      groupRebalanceTimeoutMs:
        r.chance(0.15) && scenarioSettings.expel
          ? r.int(50, rebalanceTimeoutMs)
          : rebalanceTimeoutMs + 5000 + r.int(0, 2000),
      sessionTimeoutMs: r.int(100, 1500),
      staleOnRevoke: r.chance(0.5),
      pauseSurvivesRejoin: scenarioSettings.pauseSurvivesRejoin,
      consumerRestartDelayMax: r.int(100, 1000),
      metadataMaxBytes: 4096,
    },
    services: {
      produceLatencyMax: r.int(0, 15),
      produceFailRate: calm ? 0 : r.pick([0, 0, 0.05, 0.2]),
      ambiguousProduceRate: 0.3,
      storeLatencyMax: r.int(0, 5),
      registryLatencyMax: r.int(1, 20),
    },
    behaviors: [
      ['ok', 60],
      ['slow', 8],
      ['fail', 10 * failureScale],
      ['non-retriable', 2 * failureScale],
      ['type-error', 1 * failureScale],
      ['retry-later', 4 * failureScale],
      ['retry-later-0', 1 * failureScale],
      ['classified-later', 2 * failureScale],
      ['hang-ok', 2 * failureScale],
      ['hang-fail', 1 * failureScale],
      ['abortable', 2 * failureScale],
    ],
    stickyRate: 0,
    stickies: [],
    slowHeads: false,
    delays: undefined,
    batch: undefined,
    chaosMs: r.int(300, 4000),
    faults: calm ? 0 : r.int(1, 8),
    faultWeights: [
      ['rebalance', 4],
      ['join', members > 1 ? 3 : 0],
      ['leave', 2],
      ['kill', 3],
      ['consumer-crash', 2],
      ['store-outage', idempotent ? 2 : 0],
      ['produce-outage', 2],
      ['commit-outage', 2],
      ['registry-outage', 2],
      ['pause', 1],
      ['burst', 2],
    ],
  };
}
