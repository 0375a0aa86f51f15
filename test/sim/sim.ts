/**
 * One seed of the deterministic simulation: the real WorkerCore (one or two instances at once)
 * against the Kafka model, on virtual time, with random handler outcomes and faults, and the
 * invariants of README "What Strand guarantees" checked after every step.
 */
import { NonRetriableError, RetryLaterError } from '../../src/failure/errors.js';
import { HEADERS, headerString } from '../../src/headers.js';
import { MemoryIdempotencyStore } from '../../src/idempotency/memory-store.js';
import { createLogger } from '../../src/observability/logger.js';
import { QueueMetrics } from '../../src/observability/metrics.js';
import type { OffsetCommit, OutgoingRecord, TopicRecords } from '../../src/ports.js';
import { retryPolicies } from '../../src/timing/backoff.js';
import { chooseBucket, type DelayBucket, delayBucketsFor, overshoot } from '../../src/topology/delays.js';
import { type TopicNames, topicNames } from '../../src/topology/topics.js';
import { WorkerCore } from '../../src/worker/core.js';
import { NO_TENANT, type TenantQueue } from '../../src/worker/fairness/tenant-queue.js';
import type { BatchContext, FollowUpTarget } from '../../src/worker/job.js';
import { decodeOffsetMap } from '../../src/worker/offset-map.js';
import {
  type Job,
  type JobContext,
  type ResolvedWorkerOptions,
  resolveWorkerOptions,
} from '../../src/worker/options.js';
import type { WorkItem } from '../../src/worker/work-item.js';
import { ChildClock, EPOCH, VirtualTime } from './clock.js';
import {
  CommitJudge,
  heldReason,
  keyStart,
  type LiveRun,
  type OwnershipOrder,
  RunOverlap,
  TenantShares,
  unresolvedBefore,
} from './invariants.js';
import {
  Cluster,
  Group,
  type LogEntry,
  MemberPort,
  type ModelObserver,
  SIM_AT,
  tpOf,
} from './kafka-model.js';
import { desiredOf, mapDone, modelAdmin, workerLag } from './lag-probe.js';
import { Rng } from './random.js';
import {
  type Behavior,
  type FaultKind,
  type SeedConfig,
  type Sticky,
  seedConfig,
  type TenantsConfig,
} from './scenario.js';
import {
  encodeValue,
  KNOWN_SCHEMAS,
  type Outages,
  SimDecoder,
  SimParkingPort,
  SimProducer,
  SimStore,
  SimTransactionPort,
  type ValueKind,
} from './services.js';

const TOPIC = 'jobs';
/** Exactly-once seeds: the topic of the jobs' follow-ups (`ctx.enqueue`). */
const FOLLOW_UPS = 'sim-follow-ups';
/** A job's follow-up: its rid as value, staged by the core for the job's round. */
function followUp(job: Job<unknown>): FollowUpTarget<object> {
  const rid = (job.data as { rid: number }).rid;
  const records = [
    {
      topic: FOLLOW_UPS,
      messages: [{ key: null, value: Buffer.from(String(rid)), headers: {}, partition: 0 }],
    },
  ];
  return {
    prepare: async () => ({ jobIds: [`${rid}:f`], records }),
    enqueueMany: () => Promise.reject(new Error('exactly-once seeds stage follow-ups')),
  };
}
const TRACE_SIZE = 30;
/** Virtual time the quiet period may take to settle everything. */
const QUIET_LIMIT_MS = 600_000;
const MAX_STEPS = 400_000;
/** The outcome router batches what it routes within this many ms into one send (router.ts). */
const ROUTER_LINGER_MS = 2;
/** Lag is read as the worker reads it every this many steps (`probeLag`). */
const LAG_PROBE_STEPS = 40;
/** What `unsettled(…, brief)` answers for anything not settled. */
const UNSETTLED = 'unsettled';
/** A release record counts as done within this long after its key's releasing state was acknowledged. */
const RELEASE_DONE_SLACK_MS = 500;

const silentLogger = createLogger({ level: process.env.SIM_LOG_LEVEL ?? 'silent' });

/**
 * Knobs of the checks, both strict by default: `strictBytes`: `buffered.bytes` never passes
 * `maxBufferedBytes` (the intake checks room for the record it is about to add);
 * `tierOrder`: jobs of one key in a retry-tier partition start in offset order too (the intake
 * waits for a record due within its lead instead of scheduling it out of order).
 * `--loose-bytes` / `--loose-tier-order` relax them, for hunting past a known failure.
 */
export const checkSettings = { strictBytes: true, tierOrder: true, allow: [] as string[] };

export interface Violation {
  readonly seed: number;
  readonly kind: string;
  readonly text: string;
  /** Virtual ms since the start of the seed. */
  readonly at: number;
  readonly trace: readonly string[];
}

export interface SeedResult {
  readonly seed: number;
  readonly steps: number;
  readonly virtualMs: number;
  readonly violation: Violation | undefined;
  readonly stats: Record<string, number>;
}

/** A job (a job-topic record) and what became of it. */
interface JobState {
  readonly rid: number;
  readonly kind: ValueKind;
  readonly entry: LogEntry;
  /** What it does on every run, whatever the per-run draw (scenario.ts `Sticky`). */
  readonly sticky: Sticky | undefined;
  succeeded: boolean;
  dlq: boolean;
  runs: number;
  /** A delayed job's due time. */
  readonly dueAt?: number;
}

/** One instance's continuous ownership of a partition (a new one after every revocation). */
interface Epoch {
  readonly id: number;
  readonly tp: string;
  /** Per key: the offset whose handler started last. */
  readonly lastStart: Map<string, number>;
  /**
   * Offsets that reached an outcome in this ownership, with the core's tracker of the partition at
   * that moment: a worker that dropped the partition itself (its drain outlasted its rejoin
   * deadline) and took it again has a new tracker, and runs again what the old one finished.
   */
  readonly outcomes: Map<number, object | undefined>;
  readonly runs: Map<number, number>;
  readonly running: Map<number, number>;
  /**
   * Offsets the committed offset map said were done when the ownership began (exactly once: when
   * it fenced the partition's transactional id, since a zombie's round may commit until then).
   */
  mapDone: Set<number>;
  /** When the ownership began: a send started before it (a zombie's late write) is not its outcome. */
  readonly since: number;
  /** Batches: per key, offsets started and not known to have an outcome. */
  readonly openByKey: Map<string, Set<number>>;
  /** Batches: the batch (id of its first call) an offset first ran in, in this ownership. */
  readonly batchOf: Map<number, number>;
  /** Batches: per key, the call now running with it. */
  readonly callOfKey: Map<string, number>;
}

/** A handler run in progress. */
interface Run {
  readonly tp: string;
  readonly offset: number;
  readonly start: number;
}

/** Strict key order: a handler run of a keyed job, by the job-topic partition and offset of its job. */
interface KeyRun {
  readonly rid: number;
  readonly inst: Instance;
  readonly tp: string;
  readonly epoch: Epoch | undefined;
  /** `partition\0key` of the job topic. */
  readonly lane: string;
  readonly key: string;
  readonly partition: number;
  /** The job's job-topic offset (a tier record's origin offset). */
  readonly origin: number;
}

/** Which routes a record took (bits): a retry tier without / with `strand-parks-key`, the DLQ, a delay move. */
const TIER = 1;
const PARKS = 2;
const DLQ = 4;
const MOVE = 8;

class Instance {
  alive = true;
  stopping = false;
  stopped = false;
  readonly epochs = new Map<string, Epoch>();
  readonly running = new Set<Run>();
  /** When `beforeRejoin()` was last called. */
  drainStartedAt = 0;
  /** Since when readiness has said ready while the member is out of the group, or while it drains. */
  readyOutSince: number | undefined;
  readyHeldSince: number | undefined;
  /** A `consumeDelayBuckets` under way (the Worker runs one at a time: findNewDelayBuckets). */
  resubscribing = false;
  /** Expelled at the rebalance timeout and not told yet: runs it starts may overlap the next owner's. */
  zombie = false;
  /** Its clock's skew against the model's time: the timestamps of the records it produces. */
  skew = 0;
  /**
   * Per `tp@offset` (a released job's: its job-topic record's): the ownership (tracker) a run that
   * failed started in, until a send routes it. The send counts for that ownership, not the one
   * owning the partition when it is acknowledged: a worker that dropped the partition and took it
   * afresh meanwhile runs the job again (at least once).
   */
  readonly failedRuns = new Map<string, object | undefined>();
  core!: WorkerCore;

  constructor(
    readonly id: string,
    readonly clock: ChildClock,
    readonly port: MemberPort,
  ) {}
}

export class Simulation implements ModelObserver {
  readonly cfg: SeedConfig;
  readonly time = new VirtualTime();
  readonly cluster: Cluster;
  readonly group: Group;
  readonly topics: TopicNames;
  private readonly rng: Rng;
  private readonly faultRng: Rng;
  private readonly handlerRng: Rng;
  private readonly delayRng: Rng;
  private readonly stickyRng: Rng;
  /** Main-topic partitions that got their first job (for slow heads). */
  private readonly headed = new Set<number>();
  /** Timer steps run so far: everything a step started (its microtasks) ended before the next. */
  private step = 0;
  /**
   * Per partition tracker of a core (its ownership): offsets its core reported done (job events),
   * with the step in which that happened.
   */
  private readonly doneBy = new WeakMap<object, Map<number, number>>();
  /** The tracker that owned a job when its handler started (`job:started`). */
  private readonly startedBy = new WeakMap<object, object | undefined>();
  private readonly outages: Outages = { registry: false, store: false, produce: false };
  private readonly outageDepth = { registry: 0, store: 0, produce: 0, commit: 0 };
  private readonly modelFaults = { commitOutage: false };
  private readonly jobs: JobState[] = [];
  /** Per routed record (`tp:offset`): the routes it took (bits TIER, PARKS, DLQ, MOVE). */
  private readonly forwarded = new Map<string, number>();
  /**
   * Strict key order (`retry.ordering: 'strict'` with retry tiers): the core parks keys. Ground
   * truth of the parking topic and of release records, kept as they are written.
   */
  private readonly strict: boolean;
  /**
   * `exactlyOnce` seeds (relaxed order; a stream of their own for job-handler seeds, another for
   * batch-handler seeds): rounds.
   */
  private readonly eos: boolean;
  /** Each input partition's transactional epoch (the model's transaction coordinator). */
  private readonly txEpochs = new Map<string, number>();
  /** The writer fence of each parking partition (its transactional id's epoch; SimParkingPort). */
  private readonly parkingEpochs = new Map<number, number>();
  /**
   * The log cleaner of the compacted parking topic: the offsets it removed per partition, how
   * often it runs before a read (half the seeds: never) and its own random stream, so seeds
   * without it keep every other draw.
   */
  private readonly cleaned = new Map<number, Set<number>>();
  private readonly cleaner: Rng;
  private readonly cleanChance: number;
  /** Follow-ups (`ctx.enqueue`) visible to read_committed readers, by rid. */
  private readonly followUps = new Map<number, number>();
  /**
   * Exactly once: when a job's tier / DLQ record was staged (what its send time is), by instance and
   * position (a member out of the group may stage the same job too, later: seed 67132).
   */
  private readonly stagedAt = new Map<string, number>();
  /** Job-topic records (`partition:offset`) written to the parking topic as parked jobs (`f:`). */
  private readonly parkedJobs = new Set<string>();
  /**
   * Per `partition\0key`: the key's latest `k:` record in the parking topic (head null: a
   * tombstone), and its version (bumped when it changes).
   */
  private readonly keyState = new Map<
    string,
    { head: string | null; headOffset: number; version: number; releasing?: boolean }
  >();
  /** `partition\0jobId`: a `k:` record naming the job as head was written. */
  private readonly parkStates = new Set<string>();
  /**
   * Release records (`tp:offset` of the job topic): the head they release, its key, and the
   * version of the key's state when the release was written.
   */
  private readonly releases = new Map<
    string,
    {
      head: string;
      key: string;
      partition: number;
      version: number;
      /** Its place among the writes of release records and tier records that park a key (`writes`). */
      seq: number;
      /** When an acknowledged state record said the key is being released, and who wrote it. */
      releasingAt?: number;
      releasingBy?: Instance;
    }
  >();
  /**
   * `completion-dropped` with strict key order: a job-topic job sent to a tier counts as done once
   * its key's state is written, a head's tier job that ended once its release record is: per
   * `instance\0park\0partition\0jobId` / `instance\0rel\0jobId`, the offsets waiting for that write.
   */
  private readonly deferredDone = new Map<
    string,
    { tp: string; offset: number; tracker: object | undefined }[]
  >();
  /** Per `deferredDone` entry of release records: acknowledged writes not counted yet. */
  private readonly deferredAcks = new Map<string, number>();
  /** `partition\0jobId`: a release record of the job was written. */
  private readonly releasesFor = new Set<string>();
  /**
   * Per `partition\0key` of the job topic: jobs whose tier record with `strand-parks-key` was
   * acknowledged, with their origin offset. The key is parked behind each until it resolves.
   */
  private readonly heads = new Map<string, Map<number, number>>();
  /** Per `partition\0rid`: the place (`writes`) of the head's latest tier record with `strand-parks-key`. */
  private readonly headWritten = new Map<string, number>();
  /** Per `partition\0rid`: the job-topic offset of the head's latest release record. */
  private readonly lastRelease = new Map<string, number>();
  /** Counts release records and tier records that park a key, in the order they are written. */
  private writes = 0;
  /** Per `partition\0key`: a released job dead-lettered (not `key-dead`), in that version of the key's state. */
  private readonly deadFollower = new Map<
    string,
    { rid: number; version: number; inst: Instance; epoch: Epoch }
  >();
  /** Per `partition\0key`: handler runs in progress (strict key order). */
  private readonly keyRuns = new Map<string, Set<KeyRun>>();
  /** `commit-backwards`, `commit-passes-unfinished` (invariants.ts, shared with the trace checker). */
  private readonly commits = new CommitJudge((kind, text) => this.violation(kind, text));
  /**
   * Per `worker|partition\0key`: its writes of the key's state saying `head` is being released that
   * failed since one of the key was acknowledged, and when the last failed (`release-pins-partition`
   * allows the retry's backoff).
   */
  private readonly stateWriteFailures = new Map<string, { count: number; at: number; head: string }>();
  /** Per worker and release record: the first commit that stopped at it (`release-pins-partition`). */
  private readonly pinnedSince = new Map<string, number>();
  /** Handler runs in progress per job (rid) and per job-topic partition and key (`run-overlap`). */
  private readonly overlap = new RunOverlap<Instance>(
    (kind, text) => this.violation(kind, text),
    () => this.cfg.worker.jobTimeoutMs,
  );
  private readonly instances: Instance[] = [];
  private readonly byPort = new Map<MemberPort, Instance>();
  private readonly store: MemoryIdempotencyStore;
  private readonly options: ResolvedWorkerOptions;
  /** The last TRACE_SIZE trace lines, as (virtual ms, who, text): formatted only for a violation. */
  private readonly traceAt: number[] = [];
  private readonly traceWho: string[] = [];
  private readonly traceText: string[] = [];
  private traceN = 0;
  private violationFound: Violation | undefined;
  private epochSeq = 0;
  /** Batch handler calls so far (their ids). */
  private callSeq = 0;
  /** Batches (the slot their jobs share in the core) and their ids. */
  private readonly batchIds = new WeakMap<object, number>();
  private instanceSeq = 0;
  private phase: 'chaos' | 'quiet' | 'stopping' | 'done' = 'chaos';
  private readonly stats: Record<string, number> = {};
  private readonly runBound: number;
  /** Producer clock skew: the enqueuer's, the largest of any (drawn from their own stream). */
  private readonly skewRng: Rng;
  /** User code faults drawn while running (their own stream). */
  private readonly userRng: Rng;
  private readonly enqueueSkew: number;
  private readonly maxSkew: number;
  private readonly admin: ReturnType<typeof modelAdmin>;
  /** The largest record (key + value + the intake's 64 bytes of overhead), for the byte-cap slack. */
  private maxRecordBytes = 0;

  constructor(
    readonly seed: number,
    private readonly verbose = false,
  ) {
    this.cfg = seedConfig(seed);
    const c = this.cfg;
    this.rng = Rng.derive(seed, 2);
    this.faultRng = Rng.derive(seed, 3);
    this.handlerRng = Rng.derive(seed, 4);
    this.delayRng = Rng.derive(seed, 8);
    this.stickyRng = Rng.derive(seed, 6);
    this.skewRng = Rng.derive(seed, 13);
    this.userRng = Rng.derive(seed, 12);
    this.maxSkew = this.skewRng.chance(0.4) ? this.skewRng.int(1, 5000) : 0;
    this.enqueueSkew = this.skewRng.int(-this.maxSkew, this.maxSkew);
    this.topics = topicNames(TOPIC, c.worker.tiers.length);
    this.topics.delays = c.delays ? delayBucketsFor(TOPIC, c.delays.buckets) : [];
    const delayTopics = this.topics.delays.map((b) => b.topic);
    this.cluster = new Cluster(this.time);
    // The parking topic has the job topic's partitions; nobody consumes it in the group.
    for (const t of [
      this.topics.main,
      ...this.topics.tiers,
      this.topics.dlq,
      ...delayTopics,
      this.topics.parked,
    ])
      this.cluster.addTopic(t, c.partitions);
    this.strict = c.worker.ordering === 'strict' && c.worker.tiers.length > 0;
    // Job-handler seeds draw from stream 901 as before batch handlers were covered; batch seeds
    // from 902 (half of the relaxed ones), so every other seed runs as it did.
    // Strict seeds draw from stream 903 (their parking writes are rounds then).
    this.eos = this.strict
      ? Rng.derive(seed, 903).chance(0.4)
      : Rng.derive(seed, c.batch ? 902 : 901).chance(c.batch ? 0.5 : 0.8);
    this.cluster.addTopic(FOLLOW_UPS, c.partitions);
    this.cleaner = Rng.derive(seed, 950);
    this.cleanChance = Rng.derive(seed, 951).chance(0.5) ? 0.3 : 0;
    const tps: string[] = [];
    for (const t of [this.topics.main, ...this.topics.tiers, ...delayTopics])
      for (let p = 0; p < c.partitions; p++) tps.push(tpOf(t, p));
    this.group = new Group(this.time, this.cluster, tps, c.model, this.rng, this, this.modelFaults);
    this.admin = modelAdmin(this.cluster, this.group);
    this.store = new MemoryIdempotencyStore({ now: () => this.time.now });
    const w = c.worker;
    this.options = resolveWorkerOptions({
      brokers: ['sim:9092'],
      registry: { url: 'http://sim' },
      topic: TOPIC,
      groupId: 'g',
      ...(c.batch
        ? {
            batchHandler: () => undefined,
            batch: { maxSize: c.batch.maxSize, maxWaitMs: c.batch.maxWaitMs },
          }
        : { handler: () => undefined }),
      concurrency: w.concurrency,
      ordering: 'key',
      // Strict seeds with exactlyOnce: the option is refused at validation for now (round-parking.ts
      // `exactlyOnceFits`); the model runs the mechanism anyway, so it is set after.
      exactlyOnce: this.eos && !this.strict,
      maxBufferedJobs: w.maxBufferedJobs,
      maxBufferedBytes: w.maxBufferedBytes,
      jobTimeoutMs: w.jobTimeoutMs,
      commitIntervalMs: w.commitIntervalMs,
      rebalanceTimeoutMs: w.rebalanceTimeoutMs,
      shutdownTimeoutMs: w.shutdownTimeoutMs,
      partitionsConsumedConcurrently: w.partitionsConsumedConcurrently,
      retry: {
        inPlace: w.inPlace,
        tiers: w.tiers,
        maxAttempts: w.maxAttempts,
        maxRetryLater: w.maxRetryLater,
        inPlaceBackoff: w.inPlaceBackoff,
        ordering: w.ordering,
        onDeadKey: w.onDeadKey,
      },
      ...(w.idempotency
        ? {
            idempotency: {
              store: this.store,
              ...w.idempotency,
              ...(c.userFaults?.keyThrows ? { key: (job: Job<unknown>) => this.userKey(job) } : {}),
            },
          }
        : {}),
      ...(w.classify
        ? {
            classify: (error: unknown) => {
              if (!(error instanceof Error)) return undefined;
              if (error.message === 'come back later') return 'retry-later' as const;
              if (error.message === 'classify throws') throw new Error('classify bug');
              if (error.message === 'classify junk') return 'sometimes' as never;
              return undefined;
            },
          }
        : {}),
      ...(c.tenants ? tenantOptions(c.tenants) : {}),
    } as never);
    if (this.eos) this.options = { ...this.options, exactlyOnce: true };
    // In-place retries of one delivery, and retry-later hops served in place (no tiers).
    this.runBound = w.maxAttempts + w.inPlace + 1;
  }

  /**
   * Invariant `tenant-share`: while a tenant X has runnable jobs (under its concurrency cap), each
   * other tenant Y starts at most ⌈1/w(X)⌉ × ⌈w(Y)⌉ jobs between two starts of X — one turn of Y for
   * each turn X needs to earn a start. The deficit round robin of tenant-queue.ts gives that: a
   * turn adds w to a deficit below 1 (a turn left at a concurrency cap keeps its deficit and adds
   * nothing), each start takes 1, the turn ends below 1, so a turn is at most ⌈w⌉ starts; a tenant
   * whose turn ends keeps its place in the round (emptied ones too, until the cursor passes them;
   * new ones join behind it), so Y takes one turn between two turns of X; X with w(X) < 1 starts
   * once in ⌈1/w(X)⌉ turns (its deficit is 0 after a start). X waits afresh once it had no
   * runnable jobs: at a pop, or after a revoked partition's jobs left the queue (`removeWhere`; X's
   * turn passes then, as DRR passes an empty tenant's). Tenants are named as the queue names
   * them: an item without a tenant (a release record, a release strict key order adds) is
   * `NO_TENANT`'s. Checked at the dispatcher's tenant queue of each instance, in seeds without rate
   * limits (a tenant or key out of tokens waits longer, by design).
   */
  private watchTenantShares(inst: Instance, core: WorkerCore): void {
    const t = this.cfg.tenants;
    if (!t || !t.fair || t.tenantRate || t.keyRate) return;
    const queue = (core as unknown as { dispatcher: { opts: { tenants?: TenantQueue<WorkItem> } } })
      .dispatcher.opts.tenants;
    if (!queue) return;
    const cap = t.tenantConcurrency ?? Number.POSITIVE_INFINITY;
    const open = () => [...queue.waitingByTenant().keys()].filter((n) => queue.runningOf(n) < cap);
    const shares = new TenantShares(
      (name) => t.weights[name] ?? 1,
      (kind, text) => this.violation(kind, text),
    );
    // A revoked partition's waiting jobs leave between two pops: a tenant left without runnable
    // jobs lost its turn (tenant-queue.ts `emptied`) and waits afresh.
    const removeWhere = queue.removeWhere.bind(queue);
    queue.removeWhere = (pred) => {
      const removed = removeWhere(pred);
      shares.waiting(queue.waitingByTenant());
      return removed;
    };
    const pop = queue.pop.bind(queue);
    queue.pop = () => {
      const before = open();
      const item = pop();
      if (item) shares.started(item.tenant ?? NO_TENANT, before, `${inst.id}: `);
      else shares.waiting(new Set(before));
      return item;
    };
  }

  // ---- trace and violations -------------------------------------------------------------------

  trace(who: string, text: string): void {
    const i = this.traceN++ % TRACE_SIZE;
    this.traceAt[i] = this.time.now - EPOCH;
    this.traceWho[i] = who;
    this.traceText[i] = text;
    if (this.verbose) console.log(this.traceLine(i));
  }

  private traceLine(i: number): string {
    return `${String(this.traceAt[i]).padStart(6)}ms ${this.traceWho[i]!.padEnd(5)} ${this.traceText[i]}`;
  }

  private lastTrace(): string[] {
    const out: string[] = [];
    const n = Math.min(this.traceN, TRACE_SIZE);
    for (let i = this.traceN - n; i < this.traceN; i++) out.push(this.traceLine(i % TRACE_SIZE));
    return out;
  }

  violation(kind: string, text: string): void {
    if (this.violationFound) return;
    if (checkSettings.allow.includes(kind)) {
      this.count(`allowed:${kind}`);
      return;
    }
    this.trace('CHECK', `VIOLATION ${kind}: ${text}`);
    this.violationFound = { seed: this.seed, kind, text, at: this.time.now - EPOCH, trace: this.lastTrace() };
  }

  private count(name: string, n = 1): void {
    this.stats[name] = (this.stats[name] ?? 0) + n;
  }

  // ---- ground truth ---------------------------------------------------------------------------

  /**
   * The record reached an outcome: a marker, its job succeeded somewhere, or it was routed on
   * (acknowledged). Strict key order: a job-topic job written to the parking topic (`f:`); one
   * sent to a retry tier with `strand-parks-key` only once its key's state (`k:`) names it too; a
   * tier record with `strand-parks-key` that ended (success, DLQ) only once a release record of its
   * job was written; a release record once its key no longer waits behind its head (released,
   * parked behind another job, or never behind this one: stale).
   */
  private covered(tp: string, offset: number): boolean {
    const entry = this.cluster.log(tp)[offset];
    if (!entry) return false;
    if (entry.marker) return true;
    const at = `${tp}:${offset}`;
    const release = this.releases.get(at);
    if (release) {
      // Released, being released (its state says so: a new owner resumes it), parked behind
      // another job (or behind a job of the same id, a duplicate: a new version), or stale: the
      // key does not wait behind this head.
      const state = this.keyState.get(`${release.partition}\0${release.key}`);
      if (state?.head !== release.head || state.version !== release.version || state.releasing === true)
        return true;
      // Parked behind its head anew: a tier record of the head written after this release record
      // (a member out of the group ran the head again) parks the key, and its end writes a release
      // record of its own; this one releases nothing the parking topic still waits for. Or a later
      // release record of the same head follows in the partition (seed 69053): that one releases
      // the key, and is judged itself when a commit passes it.
      const lane = `${release.partition}\0${this.ridOf(release.head)}`;
      return (this.headWritten.get(lane) ?? -1) > release.seq || (this.lastRelease.get(lane) ?? -1) > offset;
    }
    const job = this.jobs[entry.rid];
    const routes = this.forwarded.get(at) ?? 0;
    const jobId = headerString(entry.headers, HEADERS.jobId) ?? '';
    if (entry.topic === this.topics.main) {
      if (job?.succeeded || this.parkedJobs.has(`${entry.partition}:${offset}`)) return true;
      if ((routes & (TIER | DLQ | MOVE)) !== 0) return true;
      return (routes & PARKS) !== 0 && this.parkStates.has(`${entry.partition}\0${jobId}`);
    }
    // A retried job waiting in a delay bucket (a retry-later longer than its tier) is done once moved.
    if (headerString(entry.headers, HEADERS.parksKey) !== undefined && !this.isBucket(entry.topic)) {
      if ((routes & (TIER | PARKS)) !== 0) return true;
      const origin = headerString(entry.headers, HEADERS.originPartition);
      return (job?.succeeded === true || (routes & DLQ) !== 0) && this.releasesFor.has(`${origin}\0${jobId}`);
    }
    if (job?.succeeded) return true;
    return routes !== 0;
  }

  /** The job reached its end: a handler run of it succeeded, or it was dead-lettered. */
  private resolved(rid: number): boolean {
    const j = this.jobs[rid];
    return j !== undefined && (j.succeeded || j.dlq || this.deadStaged.has(rid));
  }

  /**
   * Exactly once: jobs whose DLQ record was staged for a round (`job:dead`). The key's next job may
   * run from then on: the record is visible with (or before) anything of the key staged after it.
   */
  private readonly deadStaged = new Set<number>();

  /** The rid of a job id of this simulation (`job-<rid>`), or -1. */
  private ridOf(jobId: string | undefined): number {
    const m = /^job-(\d+)$/.exec(jobId ?? '');
    return m ? Number(m[1]) : -1;
  }

  private instanceOf(member: MemberPort): Instance {
    return this.byPort.get(member)!;
  }

  // ---- ModelObserver --------------------------------------------------------------------------

  commitSent(member: MemberPort, offsets: readonly OffsetCommit[]): void {
    const max = this.cfg.worker.metadataMaxChars ?? 4000;
    const inst = this.instanceOf(member);
    for (const o of offsets) {
      const tp = tpOf(o.topic, o.partition);
      this.checkCompletionsKept(inst, tp, o);
      // A member out of the group (stopped, crashed, expelled) cannot land a commit; one in it must own the partition.
      if (!member.owns(tp) && (member.phase === 'stable' || member.phase === 'revoking'))
        this.violation(
          'commit-unowned',
          `${member.id} commits ${tp}@${o.offset} but owns [${member.told.join(' ')}]`,
        );
      if (o.metadata.length > max)
        this.violation(
          'metadata-size',
          `${member.id} commits ${tp} with ${o.metadata.length} chars of metadata (max ${max})`,
        );
      if (o.offset > this.cluster.log(tp).length)
        this.violation(
          'commit-beyond-end',
          `${member.id} commits ${tp}@${o.offset}, log end ${this.cluster.log(tp).length}`,
        );
      this.checkReleaseNotPinning(inst, tp, o);
    }
    this.count('commits');
  }

  /**
   * `completion-dropped`: a commit carries every job its ownership finished above the commit
   * point in its offset map (else the next owner runs them again). The commit was computed just
   * now from the core's current tracker of the partition; a job counts for that tracker when the
   * core reported it done (job:completed / retried / dead / duplicate) while its item belonged to
   * that tracker; the offset is marked done in a microtask after the event, so events of this very
   * step are left out.
   */
  /**
   * A release does not pin its partition (issue 25, defect 4): once the worker releasing a key has
   * written that the key is being released, its release record counts as done, so the commit point
   * of that worker does not stay on it while the parked jobs run (`release-pins-partition`).
   */
  private checkReleaseNotPinning(inst: Instance, tp: string, o: OffsetCommit): void {
    const at = `${tp}:${o.offset}`;
    const rel = this.releases.get(at);
    if (!rel || rel.releasingBy !== inst || rel.releasingAt === undefined) return;
    // Only while the key's state is this release's (a stale release record waits in its key's lane:
    // seed 3280 before this line, a commit point held 1.3 s by a stale release — not checked).
    const state = this.keyState.get(`${rel.partition}\0${rel.key}`);
    if (state?.head !== rel.head || state.releasing !== true) return;
    const epoch = inst.epochs.get(tp);
    if (!epoch || epoch.since > rel.releasingAt) return;
    // From the first commit that stopped there (the offsets before it may have ended only now).
    const key = `${inst.id}|${at}`;
    const first = this.pinnedSince.get(key) ?? this.time.now;
    this.pinnedSince.set(key, first);
    // The record counts as done once a write of its key's state made after it reached its turn is
    // acknowledged (the owner's state must land after any other writer's): while its writes saying
    // the key is being released fail, from when the worker's next try is due (its produce backoff;
    // seed 39756, three in a row). Not for other writes of the key (a new head's: seed 39285).
    const failed = this.stateWriteFailures.get(`${inst.id}|${rel.partition}\0${rel.key}`);
    const due = failed?.head === rel.head ? failed.at + this.retryDueWithin(failed.count) : 0;
    const held = this.time.now - Math.max(first, due);
    if (held > RELEASE_DONE_SLACK_MS + 3 * this.cfg.worker.commitIntervalMs)
      this.violation(
        'release-pins-partition',
        `${inst.id} commits ${tp}@${o.offset}, the release record of ${rel.head} (key ${rel.key}), for ${held} ms after it wrote that the key is being released`,
      );
  }

  /** The longest a worker waits to send a write again after `failures` failed in a row, plus its latency. */
  private retryDueWithin(failures: number): number {
    const { baseMs, maxMs, jitter } = retryPolicies.produce;
    const wait = Math.min(maxMs, baseMs * 2 ** Math.max(0, failures - 1)) * (1 + jitter);
    return Math.ceil(wait) + this.cfg.services.produceLatencyMax;
  }

  /** A parking write failed (written or not): a key state saying a release runs is sent again after a backoff. */
  private onParkingFail(inst: Instance, partition: number, records: readonly OutgoingRecord[]): void {
    for (const r of records) {
      const id = r.key === null ? '' : r.key.toString();
      const at = id.indexOf('\0k:');
      if (at < 0 || r.value === null) continue;
      const state = JSON.parse(r.value.toString('utf8')) as { head: string; releasing?: unknown };
      if (state.releasing === undefined) continue;
      const lane = `${inst.id}|${partition}\0${id.slice(at + 3)}`;
      const was = this.stateWriteFailures.get(lane);
      const count = was?.head === state.head ? was.count + 1 : 1;
      this.stateWriteFailures.set(lane, { count, at: this.time.now, head: state.head });
    }
  }

  private checkCompletionsKept(inst: Instance, tp: string, o: OffsetCommit): void {
    const tracker = this.trackerOf(inst, tp);
    const done = tracker && this.doneBy.get(tracker);
    if (!done) return;
    let map: Set<number> | undefined;
    for (const [offset, step] of done) {
      if (step === this.step) continue;
      // Commit points of one tracker never go back: what is at or below this one is settled.
      if (offset < o.offset) {
        done.delete(offset);
        continue;
      }
      if (offset === o.offset) continue;
      map ??= decodeOffsetMap(o.offset, o.metadata);
      if (!map.has(offset)) {
        this.violation(
          'completion-dropped',
          `${inst.id} commits ${tp}@${o.offset} with a map of ${map.size} offsets (${o.metadata.length} chars) without ${offset}, which it finished in this ownership`,
        );
        return;
      }
    }
  }

  /**
   * The ownership as the shared start checks see it: an outcome counts for `done-rerun` only under
   * the tracker that reached it (a worker that dropped the partition itself and took it again runs
   * again what its old tracker finished: at least once).
   */
  private ownership(inst: Instance, epoch: Epoch): OwnershipOrder {
    const tracker = this.trackerOf(inst, epoch.tp);
    return {
      lastStart: epoch.lastStart,
      outcomes: epoch.outcomes,
      doneHere: (o) => epoch.outcomes.has(o) && epoch.outcomes.get(o) === tracker,
    };
  }

  /** The core's tracker of `tp` now (a look inside the core: its ownership of the partition). */
  private trackerOf(inst: Instance, tp: string): object | undefined {
    const core = inst.core as unknown as {
      assignment?: { get(tp: string): { tracker: object } | undefined };
    };
    if (!core.assignment) {
      this.violation('sim-peek', 'WorkerCore has no `assignment` any more: update sim.ts trackerOf');
      return undefined;
    }
    return core.assignment.get(tp)?.tracker;
  }

  /** The tracker of the one accepted, unfinished item of `tp`@`offset` in the core, if exactly one. */
  private pendingTracker(inst: Instance, tp: string, offset: number): object | undefined {
    const core = inst.core as unknown as {
      pending?: Map<{ tp: string; offset: string; tracker: object }, true>;
    };
    if (!core.pending) {
      this.violation('sim-peek', 'WorkerCore has no `pending` any more: update sim.ts pendingTracker');
      return undefined;
    }
    let found: object | undefined;
    let n = 0;
    for (const item of core.pending.keys())
      if (item.tp === tp && Number(item.offset) === offset) {
        found = item.tracker;
        n++;
      }
    return n === 1 ? found : undefined;
  }

  /**
   * The core reported a job's outcome (`retried`: it went to a tier). Strict key order: a keyed
   * job-topic job sent to a tier counts as done only once its key's state is written, and a tier
   * job carrying `strand-parks-key` that ended only once its release record is (executor.ts
   * `run`), so those wait for that write of this instance (`reportDeferred`).
   */
  /**
   * Exactly once: a round landed whole. Its tier / DLQ / moved records are written as acknowledged
   * sends are, its follow-ups counted by rid (`follow-up-twice`), then its offset is committed with
   * the checks every commit gets.
   */
  private onRound(
    inst: Instance,
    tp: string,
    records: readonly TopicRecords[],
    o: OffsetCommit | undefined,
  ): number[] {
    const placed: number[] = [];
    // A round lands whole: its release records are judged after the outcomes they report.
    const releases: [string, OutgoingRecord][] = [];
    for (const { topic, messages } of records) {
      // Strict key order: the parking writes of a job-topic partition are rounds of it (round-parking.ts).
      if (topic === this.topics.parked) {
        const partition = messages[0]?.partition ?? -1;
        if (tp !== tpOf(this.topics.main, partition) || messages.some((m) => m.partition !== partition))
          this.violation(
            'parking-partition',
            `${inst.id} writes parking records of ${partition} in a round of ${tp}`,
          );
        placed.push(...this.onParkingWrite(inst, partition, messages, true).map((e) => e.offset));
        continue;
      }
      for (const m of messages) {
        placed.push(-1);
        if (headerString(m.headers, HEADERS.release) !== undefined) {
          releases.push([topic, m]);
          continue;
        }
        if (topic !== FOLLOW_UPS) {
          this.onProduce(inst, topic, m, this.stagedTime(inst, topic, m), true);
          continue;
        }
        const rid = Number(m.value?.toString());
        const n = (this.followUps.get(rid) ?? 0) + 1;
        this.followUps.set(rid, n);
        if (n > 1)
          this.violation('follow-up-twice', `${inst.id} published the follow-up of rid ${rid} again`);
        this.cluster.append(topic, m.partition ?? 0, { key: null, value: m.value, headers: m.headers, rid });
      }
    }
    for (const [topic, m] of releases) this.onProduce(inst, topic, m, this.time.now, true);
    if (!o) {
      this.trace(inst.id, `round ${tp} committed without an offset (${records.length} topics)`);
      return placed;
    }
    this.trace(inst.id, `round ${tp}@${o.offset} committed (${records.length} topics)`);
    this.commitApplied(inst.port, o, this.group.committed.get(tp));
    this.group.committed.set(tp, { offset: o.offset, metadata: o.metadata });
    return placed;
  }

  /**
   * When a round's record was staged, which is when an acknowledged send would have been made: a
   * routed job's from its `job:retried` / `job:dead` event, a delayed job's move into a bucket from
   * its hold (staged at hold-until less the bucket's length), else the round's time.
   */
  private stagedTime(inst: Instance, topic: string, m: OutgoingRecord): number {
    let at = headerString(m.headers, SIM_AT);
    // A released job's record names its parked copy: staged under the job-topic record it was.
    const parkedAt = at?.startsWith(`${this.topics.parked}:`)
      ? at.slice(this.topics.parked.length + 1)
      : undefined;
    if (parkedAt !== undefined) {
      const [p, o] = parkedAt.split(':').map(Number);
      at = this.cluster.log(tpOf(this.topics.parked, p!))[o!]?.src ?? at;
    }
    const routed = at === undefined ? undefined : this.stagedAt.get(`${inst.id}|${at}`);
    if (routed !== undefined) return routed;
    const bucket = this.topics.delays?.find((b) => b.topic === topic);
    const hold = headerString(m.headers, HEADERS.holdUntil);
    return bucket && hold !== undefined ? Number(hold) - bucket.ms : this.time.now;
  }

  /**
   * Exactly once, after every instance stopped: each job that completed has one follow-up, and one
   * that never completed none (a batch handler enqueues for its failed jobs too).
   */
  private checkFollowUps(): void {
    if (!this.eos) return;
    for (const j of this.jobs) {
      const n = this.followUps.get(j.rid) ?? 0;
      if (j.succeeded && !j.dlq && n !== 1)
        this.violation('follow-up-missing', `rid ${j.rid} completed with ${n} follow-ups`);
      else if (!j.succeeded && n > 0)
        this.violation('follow-up-of-failed', `rid ${j.rid} never completed and has ${n} follow-ups`);
    }
  }

  private doneOrDeferred(
    inst: Instance,
    job: {
      topic: string;
      partition: number;
      offset: string;
      key: string | null;
      headers: Record<string, string>;
    },
    tracker: object | undefined,
    retried: boolean,
  ): void {
    const tp = tpOf(job.topic, job.partition);
    const offset = Number(job.offset);
    const jobId = job.headers[HEADERS.jobId] ?? '';
    let waitFor: string | undefined;
    if (this.strict && retried && job.topic === this.topics.main && job.key !== null)
      waitFor = `park\0${job.partition}\0${jobId}`;
    else if (
      this.strict &&
      !retried &&
      job.topic !== this.topics.main &&
      job.headers[HEADERS.parksKey] !== undefined
    )
      waitFor = `rel\0${jobId}`;
    if (waitFor === undefined) {
      this.reportedDone(inst, tp, offset, tracker);
      return;
    }
    const k = `${inst.id}\0${waitFor}`;
    let list = this.deferredDone.get(k) ?? [];
    // Entries of an ownership that ended never count; their acknowledgements are forgotten with
    // them (counting too few only reports later).
    const live = list.filter((d) => d.tracker === this.trackerOf(inst, d.tp));
    if (live.length < list.length) {
      list = live;
      this.deferredAcks.delete(k);
    }
    list.push({ tp, offset, tracker });
    this.deferredDone.set(k, list);
  }

  /** This instance's write that `what` waited for was acknowledged: its offsets count as done now. */
  private reportDeferred(inst: Instance, what: string): void {
    const k = `${inst.id}\0${what}`;
    const list = this.deferredDone.get(k);
    if (!list) return;
    // A release record is one item's write: items of one job id may wait at once (a tier job and a
    // duplicate of its previous hop, seed 47635), each done once its own write is acknowledged.
    if (what.startsWith('rel\0')) {
      const acks = (this.deferredAcks.get(k) ?? 0) + 1;
      this.deferredAcks.set(k, acks);
      if (acks < list.length) return;
      this.deferredAcks.delete(k);
    }
    this.deferredDone.delete(k);
    for (const d of list) this.reportedDone(inst, d.tp, d.offset, d.tracker);
  }

  /** The core reported `tp`@`offset` done by an item of `tracker`: it counts if that is still the partition's. */
  private reportedDone(inst: Instance, tp: string, offset: number, tracker: object | undefined): void {
    if (!tracker || tracker !== this.trackerOf(inst, tp)) return;
    let done = this.doneBy.get(tracker);
    if (!done) {
      done = new Map();
      this.doneBy.set(tracker, done);
    }
    if (!done.has(offset)) done.set(offset, this.step);
  }

  commitApplied(
    member: MemberPort,
    o: OffsetCommit,
    prev: { offset: number; metadata: string } | undefined,
  ): void {
    const tp = tpOf(o.topic, o.partition);
    this.commits.applied(
      member.id,
      tp,
      o.offset,
      (v) => this.covered(tp, v),
      (v) => ` (rid ${this.cluster.log(tp)[v]?.rid})`,
      prev?.offset,
    );
    for (const claimed of decodeOffsetMap(o.offset, o.metadata)) {
      if (!this.covered(tp, claimed))
        this.violation(
          'offset-map-claims-unfinished',
          `${member.id} committed ${tp}@${o.offset} with a map saying ${claimed} is done; it has no outcome`,
        );
    }
  }

  assigned(member: MemberPort, generation: number, tps: readonly string[], continuous: boolean): void {
    const inst = this.instanceOf(member);
    inst.zombie = false;
    // A member that missed a generation (expelled) may own a partition it kept anew.
    if (!continuous) inst.epochs.clear();
    const next = new Set(tps);
    for (const tp of [...inst.epochs.keys()]) if (!next.has(tp)) inst.epochs.delete(tp);
    for (const tp of tps) {
      if (inst.epochs.has(tp)) continue;
      const c = this.group.committed.get(tp);
      inst.epochs.set(tp, {
        id: ++this.epochSeq,
        tp,
        lastStart: new Map(),
        outcomes: new Map(),
        runs: new Map(),
        running: new Map(),
        mapDone: c ? decodeOffsetMap(c.offset, c.metadata) : new Set(),
        since: this.time.now,
        openByKey: new Map(),
        batchOf: new Map(),
        callOfKey: new Map(),
      });
    }
    this.count('assignments');
    this.trace(member.id, `told gen ${generation}${continuous ? '' : ' (after a gap)'}`);
  }

  lostAll(member: MemberPort): void {
    const inst = this.instanceOf(member);
    inst.epochs.clear();
    // A consumer crash leaves the group without a drain: what still runs may overlap the next owner.
    this.overlap.outlive(inst);
  }

  expelled(member: MemberPort, why: 'session' | 'rebalance-timeout'): void {
    // Past the rebalance timeout a run outlived the drain (documented); a session that expired
    // while the member was alive and heartbeating is not an excuse (issue 25, defect 2).
    if (why === 'rebalance-timeout') {
      const inst = this.instanceOf(member);
      inst.zombie = true;
      this.overlap.outlive(inst);
    }
    this.count(`expelled:${why}`);
  }

  /**
   * Two runs of one record, or of two jobs of one key of a job-topic partition, on two workers, never
   * overlap in time (`run-overlap`) — unless the earlier one outlived its drain (it ran past
   * `jobTimeoutMs`, ignoring its signal, or past a drain, the rebalance timeout or a consumer
   * crash of its worker: docs/guarantees.md "when two runs of one job can overlap").
   */
  private runStarted(inst: Instance, job: Job<unknown>, rid: number): LiveRun<Instance> {
    const lane =
      job.key !== null && job.topic === this.topics.main ? `${job.partition}\0${job.key}` : undefined;
    // A member expelled at the rebalance timeout starts jobs until its next heartbeat tells it.
    const zombie = inst.zombie && !this.group.members.includes(inst.port);
    const record = `${tpOf(job.topic, job.partition)}@${job.offset}`;
    const run: LiveRun<Instance> = {
      host: inst,
      job: rid,
      record,
      lane,
      start: this.time.now,
      outlived: zombie,
    };
    this.overlap.started(
      run,
      { record: `${record} (rid ${rid})`, lane: `rid ${rid} (key ${job.key} of jobs:${job.partition})` },
      zombie,
    );
    return run;
  }

  private runEnded(run: LiveRun<Instance>): void {
    this.overlap.ended(run);
  }

  drainStarted(member: MemberPort): void {
    this.instanceOf(member).drainStartedAt = this.time.now;
  }

  /**
   * The drain before a rejoin must let running handlers finish (up to rebalanceTimeoutMs, and
   * within 80% of the port's rejoin deadline, past which the coordinator may have expelled the
   * member): one that settles earlier while a handler still runs lets the next owner start over
   * it. A handler past twice jobTimeoutMs is stuck and has given its slot back; a stopping worker
   * drains itself.
   */
  drainSettled(member: MemberPort): void {
    const inst = this.instanceOf(member);
    const w = this.cfg.worker;
    this.overlap.outlive(inst);
    // Past the port's rejoin deadline the core dropped every partition (core.ts drainForRebalance):
    // what it gets at the next join is a new ownership.
    if (this.time.now - inst.drainStartedAt >= member.rejoinDeadlineMs) inst.epochs.clear();
    const budget = Math.min(w.rebalanceTimeoutMs, member.rejoinDeadlineMs * 0.8);
    if (!inst.alive || inst.stopping || this.time.now - inst.drainStartedAt >= budget - 1) return;
    for (const run of inst.running) {
      if (this.time.now - run.start < 2 * w.jobTimeoutMs)
        this.violation(
          'rejoin-before-drain',
          `${inst.id} rejoins ${this.time.now - inst.drainStartedAt} ms into its drain (budget ${budget} ms) while ${run.tp}@${run.offset} still runs`,
        );
    }
  }

  // ---- the handler ----------------------------------------------------------------------------

  /** `idempotency.key` of seeds whose key function throws: for jobs of rid 3 mod 7, a string. */
  private userKey(job: Job<unknown>): string {
    const rid = (job.data as { rid: number }).rid;
    if (rid % 7 === 3) throw 'no key for this job';
    return job.id;
  }

  /** In seeds with user faults, a run may throw something odd instead of its planned outcome. */
  private oddThrow(): unknown {
    const u = this.cfg.userFaults;
    if (!u || !this.userRng.chance(u.rate)) return undefined;
    const kinds = ['string', 'null', 'hostile', 'number', 'plain-object', 'error-subclass'];
    if (u.classifyThrows) kinds.push('classify-throws', 'classify-junk');
    const kind = this.userRng.pick(kinds);
    this.count(`odd-throw:${kind}`);
    switch (kind) {
      case 'string':
        return 'a string';
      case 'null':
        return null;
      case 'hostile':
        return hostileObject();
      case 'number':
        return 42;
      case 'plain-object':
        return { message: 'not an Error', delayMs: Number.NaN };
      case 'classify-throws':
        return new Error('classify throws');
      case 'classify-junk':
        return new Error('classify junk');
      default:
        return new (class Odd extends Error {})('odd subclass');
    }
  }

  /** This run's behaviour: the job's sticky one, or a draw. */
  private behaviorOf(rid: number): Behavior | Sticky {
    const drawn = this.handlerRng.weighted(this.cfg.behaviors);
    const sticky = this.jobs[rid]?.sticky;
    return sticky === undefined || (sticky === 'slow-first' && this.jobs[rid]!.runs > 1) ? drawn : sticky;
  }

  /** How long a run of `behavior` takes and how it ends (an abortable run ends early on abort). */
  private plan(behavior: Behavior | Sticky): { ms: number; error?: unknown; abortable?: true } {
    const p = this.basePlan(behavior);
    if (p.abortable) return p;
    const odd = this.oddThrow();
    if (odd === undefined) return p;
    return { ms: p.ms, error: odd };
  }

  /** A retry-later delay: small, or over the whole range in seeds with wide delays. */
  private laterDelay(max: number): number {
    const u = this.cfg.userFaults;
    if (!u?.wideDelays || !this.userRng.chance(0.5)) return this.handlerRng.int(1, max);
    // A delay longer than the quiet period would not end in the run: without retry tiers it waits
    // in place, with delay buckets it waits in them; only a seed with tiers and no buckets (the
    // router cuts it to the longest tier) gets the far ones.
    const far = this.cfg.worker.tiers.length > 0 && this.topics.delays?.length === 0;
    return wideDelay(this.userRng, far ? undefined : 30_000);
  }

  private basePlan(behavior: Behavior | Sticky): { ms: number; error?: unknown; abortable?: true } {
    const r = this.handlerRng;
    const timeout = this.cfg.worker.jobTimeoutMs;
    switch (behavior) {
      case 'later-always':
        return { ms: r.int(0, 15), error: retryLater(this.laterDelay(300)) };
      case 'later-always-0':
        return { ms: r.int(0, 15), error: new RetryLaterError({ delayMs: 0 }) };
      case 'later-always-none':
        // From JavaScript, without a delay (the policy must still wait the first tier's).
        return { ms: r.int(0, 15), error: new RetryLaterError({} as { delayMs: number }) };
      case 'later-always-classified':
        return { ms: r.int(0, 15), error: new Error('come back later') };
      case 'slow-first':
        return { ms: r.int(200, 1500) };
      case 'ok':
        return { ms: r.int(0, 15) };
      case 'slow':
        return { ms: r.int(20, 400) };
      case 'fail':
        return { ms: r.int(0, 15), error: new Error('boom') };
      case 'non-retriable':
        return { ms: r.int(0, 15), error: new NonRetriableError('bad job') };
      case 'type-error':
        return { ms: r.int(0, 15), error: new TypeError('a bug') };
      case 'retry-later':
        return { ms: r.int(0, 15), error: retryLater(this.laterDelay(600)) };
      case 'retry-later-0':
        return { ms: r.int(0, 15), error: new RetryLaterError({ delayMs: 0 }) };
      case 'classified-later':
        return { ms: r.int(0, 15), error: new Error('come back later') };
      case 'hang-ok':
        return { ms: timeout + r.int(1, 2 * timeout) };
      case 'hang-fail':
        return { ms: timeout + r.int(1, 2 * timeout), error: new Error('late failure') };
      case 'abortable':
        return { ms: r.int(timeout >> 1, 3 * timeout), abortable: true };
    }
  }

  /**
   * Ends after `ms`, or when `signal` aborts if `abortable` (then with its reason). `end` is called
   * once, with the error of the run (undefined = success).
   */
  private runFor(
    inst: Instance,
    ms: number,
    abortable: boolean,
    signal: () => AbortSignal,
    finish: (error: unknown) => void,
    error: unknown,
  ): void {
    if (!abortable) {
      inst.clock.setTimeout(() => finish(error), ms);
      return;
    }
    const s = signal();
    const t = inst.clock.setTimeout(() => finish(undefined), ms);
    const onAbort = () => {
      inst.clock.clearTimeout(t);
      finish(s.reason ?? new Error('aborted'));
    };
    if (s.aborted) onAbort();
    else s.addEventListener('abort', onAbort, { once: true });
  }

  private handle(inst: Instance, job: Job<unknown>, ctx: JobContext): Promise<void> {
    const rid = (job.data as { rid: number }).rid;
    const tp = tpOf(job.topic, job.partition);
    const offset = Number(job.offset);
    const epoch = this.onStart(inst, job, tp, offset, rid);
    const owner = this.runOwner(inst, tp, offset);
    const keyRun = this.keyRunStart(inst, job, tp, rid, epoch);
    const live = this.runStarted(inst, job, rid);
    const run: Run = { tp, offset, start: this.time.now };
    inst.running.add(run);
    const behavior = this.behaviorOf(rid);
    this.trace(
      inst.id,
      `run ${tp}@${offset}${this.isReleased(job) ? ' (released)' : ''} rid ${rid} key ${job.key} attempt ${job.attempt}: ${behavior}`,
    );
    this.count(`behavior:${behavior}`);
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const end = (error?: unknown) => {
        if (settled) return;
        settled = true;
        inst.running.delete(run);
        this.runEnded(live);
        this.keyRunEnd(keyRun, error);
        this.onEnd(inst, epoch, owner, tp, offset, rid, error);
        if (error === undefined) resolve();
        else reject(error);
      };
      const p = this.plan(behavior);
      this.runFor(inst, p.ms, p.abortable === true, () => ctx.signal, end, p.error);
    });
  }

  /**
   * A batch handler call: every job draws its behaviour as a single run would; the call lasts as
   * long as its longest job (an abortable job ends it at the abort: every job fails with it), and
   * in some seeds throws (every job fails). Returns the jobs that failed.
   */
  private handleBatch(
    inst: Instance,
    jobs: readonly Job<unknown>[],
    ctx: BatchContext<unknown>,
  ): Promise<{ failed: { job: Job<unknown>; error: unknown }[] }> {
    const call = ++this.callSeq;
    const batch = this.batchOfCall(inst, jobs, call);
    const started = jobs.map((job) => {
      const rid = (job.data as { rid: number }).rid;
      const tp = tpOf(job.topic, job.partition);
      const offset = Number(job.offset);
      const epoch = this.onStart(inst, job, tp, offset, rid, batch);
      const owner = this.runOwner(inst, tp, offset);
      const keyRun = this.keyRunStart(inst, job, tp, rid, epoch);
      const live = this.runStarted(inst, job, rid);
      return { job, rid, tp, offset, epoch, owner, keyRun, live };
    });
    this.releaseCallKeys(started, call, false);
    const first = started[0]!;
    const run: Run = { tp: first.tp, offset: first.offset, start: this.time.now };
    inst.running.add(run);
    const plans = started.map((j) => ({ ...j, plan: this.plan(this.behaviorOf(j.rid)) }));
    const throws = this.handlerRng.chance(this.cfg.batch?.throwRate ?? 0);
    const ms = Math.max(...plans.map((p) => p.plan.ms));
    const abortable = plans.some((p) => p.plan.abortable);
    this.trace(
      inst.id,
      `batch call ${call}: ${plans.map((p) => `${p.tp}@${p.offset}(${p.job.key}):${p.plan.error === undefined ? 'ok' : nameOf(p.plan.error)}`).join(' ')}${throws ? ' THROWS' : ''}${abortable ? ' abortable' : ''}, ${ms} ms`,
    );
    this.count('batch-calls');
    this.count('batch-jobs', jobs.length);
    return new Promise((resolve, reject) => {
      let settled = false;
      const end = (aborted: unknown) => {
        if (settled) return;
        settled = true;
        inst.running.delete(run);
        this.releaseCallKeys(started, call, true);
        const thrown = aborted ?? (throws ? new Error('batch boom') : undefined);
        // A malformed result fails every job of the call (batch.ts); stray entries are ignored.
        const u = this.cfg.userFaults;
        const malformed =
          thrown === undefined && u && this.userRng.chance(u.malformedRate)
            ? this.userRng.pick(['not-array', 'hostile', 'stray'] as const)
            : undefined;
        const all =
          malformed === 'not-array' || malformed === 'hostile' ? new TypeError(malformed) : undefined;
        const failed: { job: Job<unknown>; error: unknown }[] = [];
        for (const p of plans) {
          const error = thrown ?? all ?? p.plan.error;
          this.runEnded(p.live);
          this.keyRunEnd(p.keyRun, error);
          this.onEnd(inst, p.epoch, p.owner, p.tp, p.offset, p.rid, error);
          if (error !== undefined) failed.push({ job: p.job, error });
        }
        if (malformed) this.count(`malformed:${malformed}`);
        const settle = () => {
          if (thrown !== undefined) reject(thrown);
          else if (malformed === 'not-array') resolve({ failed: 'everything' } as never);
          else if (malformed === 'hostile') resolve(hostileObject() as never);
          else if (malformed === 'stray')
            resolve({
              failed: [...failed, null, { job: { id: 'nope', topic: 'x', partition: 0, offset: '0' } }, {}],
            } as never);
          else resolve({ failed });
        };
        if (!this.eos) return settle();
        // Exactly once: a follow-up for every job of the call, failed ones too (the core keeps only
        // those of the jobs that complete: `follow-up-twice`, `follow-up-of-failed`).
        Promise.all(plans.map((p) => ctx.enqueue(followUp(p.job), {}, { for: p.job }))).then(settle, (e) => {
          this.violation('enqueue-rejected', `${inst.id} batch call ${call}: ${String(e)}`);
          settle();
        });
      };
      this.runFor(inst, ms, abortable, () => ctx.signal, end, undefined);
    });
  }

  /**
   * The batch a call belongs to (a look inside the core: the slot its jobs' items share), as the
   * id of the first call seen for it. A call with jobs of two batches is `batch-mixed`.
   */
  private batchOfCall(inst: Instance, jobs: readonly Job<unknown>[], call: number): number {
    const core = inst.core as unknown as {
      pending?: Map<{ tp: string; offset: string; slot?: object }, true>;
    };
    if (!core.pending) {
      this.violation('sim-peek', 'WorkerCore has no `pending` any more: update sim.ts batchOfCall');
      return call;
    }
    const wanted = new Set(jobs.map((j) => `${tpOf(j.topic, j.partition)}@${j.offset}`));
    const slotsOf = new Map<string, Set<object>>();
    for (const item of core.pending.keys()) {
      const at = `${item.tp}@${item.offset}`;
      if (!item.slot || !wanted.has(at)) continue;
      const set = slotsOf.get(at) ?? new Set();
      set.add(item.slot);
      slotsOf.set(at, set);
    }
    const counts = new Map<object, number>();
    for (const set of slotsOf.values()) for (const slot of set) counts.set(slot, (counts.get(slot) ?? 0) + 1);
    let slot: object | undefined;
    for (const [s, n] of counts) if (!slot || n > counts.get(slot)!) slot = s;
    if (!slot) return call;
    for (const at of wanted)
      if (!slotsOf.get(at)?.has(slot))
        this.violation(
          'batch-mixed',
          `${inst.id} call ${call}: ${at} is not of the batch of the call's other jobs`,
        );
    let id = this.batchIds.get(slot);
    if (id === undefined) {
      id = call;
      this.batchIds.set(slot, id);
    }
    return id;
  }

  /**
   * Batches: no two calls running at once hold a key of one partition (`batch-key-overlap`);
   * `ended` releases this call's keys.
   */
  private releaseCallKeys(
    started: readonly { job: Job<unknown>; epoch: Epoch | undefined }[],
    call: number,
    ended: boolean,
  ): void {
    for (const { job, epoch } of started) {
      if (!epoch || job.key === null) continue;
      const holder = epoch.callOfKey.get(job.key);
      if (ended) {
        if (holder === call) epoch.callOfKey.delete(job.key);
        continue;
      }
      if (holder !== undefined && holder !== call)
        this.violation(
          'batch-key-overlap',
          `${epoch.tp} key ${job.key}: call ${call} starts while call ${holder} still runs with it`,
        );
      epoch.callOfKey.set(job.key, call);
    }
  }

  private onStart(
    inst: Instance,
    job: Job<unknown>,
    tp: string,
    offset: number,
    rid: number,
    call?: number,
  ): Epoch | undefined {
    const w = this.cfg.worker;
    const state = this.jobs[rid];
    const entry = this.cluster.log(tp)[offset];
    if (!state || !entry || entry.rid !== rid) {
      this.violation(
        'wrong-job',
        `${inst.id} ran ${tp}@${offset} with rid ${rid}; the log has rid ${entry?.rid}`,
      );
      return undefined;
    }
    state.runs++;
    this.count('runs');
    if (!inst.alive) this.violation('dead-run', `${inst.id} is dead but started ${tp}@${offset}`);
    // Nothing starts while paused or draining for a rebalance; a stopping worker finishes what it
    // started (in-place retries, a release's next job) within its shutdown budget.
    const held = heldReason(inst.core.state);
    if (held)
      this.violation('start-while-held', `${inst.id} started ${tp}@${offset} (rid ${rid}) while ${held}`);
    if (job.attempt > w.maxAttempts)
      this.violation(
        'attempts',
        `${tp}@${offset} (rid ${rid}) runs attempt ${job.attempt} > maxAttempts ${w.maxAttempts}`,
      );
    if (job.topic !== this.topics.main) {
      const dueAt = Number(job.headers[HEADERS.dueAt]);
      if (!(dueAt <= this.time.now))
        this.violation(
          'early-retry',
          `${tp}@${offset} started ${dueAt - this.time.now} ms before its due time`,
        );
    }
    if (state.dueAt !== undefined && !(state.dueAt <= this.time.now))
      this.violation(
        'early-delayed',
        `${tp}@${offset} (rid ${rid}), a delayed job, started ${state.dueAt - this.time.now} ms before it was due`,
      );
    const epoch = inst.epochs.get(tp);
    if (!epoch) {
      this.violation(
        'unowned-start',
        `${inst.id} started ${tp}@${offset} (rid ${rid}) after being told it no longer owns ${tp}`,
      );
      return undefined;
    }
    // A released job (strict key order) runs from the parking topic: its job-topic offset counted
    // as done when it was parked.
    if (epoch.mapDone.has(offset) && !this.isReleased(job))
      this.violation(
        'offset-map-rerun',
        `${inst.id} ran ${tp}@${offset}, which the committed offset map says is done`,
      );
    if ((epoch.running.get(offset) ?? 0) > 0)
      this.violation(
        'attempt-overlap',
        `${inst.id} started ${tp}@${offset} while its previous attempt still runs`,
      );
    const key = job.key;
    const report = (kind: string, text: string) => this.violation(kind, text);
    if (key !== null && call !== undefined) {
      keyStart(this.ownership(inst, epoch), inst.id, tp, null, offset, () => true, false, report);
      this.checkBatchKey(inst, epoch, tp, key, offset, call);
    } else {
      const ordered = job.topic === this.topics.main || checkSettings.tierOrder;
      const own = this.ownership(inst, epoch);
      keyStart(own, inst.id, tp, key, offset, (o) => this.covered(tp, o), ordered, report);
    }
    const runs = (epoch.runs.get(offset) ?? 0) + 1;
    epoch.runs.set(offset, runs);
    if (runs > this.runBound)
      this.violation(
        'run-bound',
        `${inst.id} ran ${tp}@${offset} ${runs} times in one delivery (bound ${this.runBound})`,
      );
    epoch.running.set(offset, (epoch.running.get(offset) ?? 0) + 1);
    return epoch;
  }

  /**
   * Key order with batches: a job's first run starts after every earlier-started job of its key
   * from another batch reached an outcome (`key-overlap`), in offset order (`key-order`: within a
   * call by position, across calls by start); a call holds jobs of one batch only (`batch-mixed`).
   * A job's later runs (in-place retries with its batch) may follow later jobs of its key that its
   * batch handler already completed.
   */
  private checkBatchKey(
    inst: Instance,
    epoch: Epoch,
    tp: string,
    key: string,
    offset: number,
    call: number,
  ): void {
    const rerun = (epoch.runs.get(offset) ?? 0) > 0;
    const batch = rerun ? epoch.batchOf.get(offset)! : call;
    if (!rerun) epoch.batchOf.set(offset, call);
    else if (!epoch.batchOf.has(offset))
      this.violation('batch-mixed', `${inst.id} ${tp}@${offset} reran without a first batch`);
    let open = epoch.openByKey.get(key);
    if (!open) {
      open = new Set();
      epoch.openByKey.set(key, open);
    }
    for (const o of open) {
      if (o === offset) continue;
      if (epoch.outcomes.has(o) || this.covered(tp, o)) {
        open.delete(o);
        continue;
      }
      if (epoch.batchOf.get(o) !== batch)
        this.violation(
          'key-overlap',
          `${inst.id} ${tp} key ${key}: ${offset} (batch ${batch}) started while ${o} (batch ${epoch.batchOf.get(o)}) has not reached an outcome`,
        );
    }
    const last = epoch.lastStart.get(key);
    if (
      !rerun &&
      last !== undefined &&
      offset < last &&
      (tp.startsWith(`${this.topics.main}:`) || checkSettings.tierOrder)
    )
      this.violation('key-order', `${inst.id} ${tp} key ${key}: ${offset} started after ${last}`);
    open.add(offset);
    if (last === undefined || offset > last) epoch.lastStart.set(key, offset);
  }

  /** A job released from parking (strict key order): it runs with the parked record's headers. */
  private isReleased(job: Job<unknown>): boolean {
    return job.topic === this.topics.main && (job.headers[SIM_AT] ?? '').startsWith(`${this.topics.parked}:`);
  }

  /** Where a run's job sits in the job topic: its own record, or a tier record's origin. */
  private originOf(job: Job<unknown>): { partition: number; offset: number } | undefined {
    if (job.topic === this.topics.main) return { partition: job.partition, offset: Number(job.offset) };
    if (!this.topics.tiers.includes(job.topic)) return undefined;
    if (job.headers[HEADERS.originTopic] !== this.topics.main) return undefined;
    const partition = Number(job.headers[HEADERS.originPartition]);
    const offset = Number(job.headers[HEADERS.originOffset]);
    return Number.isInteger(partition) && Number.isInteger(offset) ? { partition, offset } : undefined;
  }

  /**
   * The coordinator's owner of `tp` is this instance, in the ownership (epoch) a run started in:
   * alive, a member of the group in its current generation, not expelled, not moved on.
   */
  private legit(inst: Instance, tp: string, epoch: Epoch | undefined): boolean {
    const m = inst.port;
    return (
      epoch !== undefined &&
      inst.alive &&
      inst.epochs.get(tp) === epoch &&
      this.group.members.includes(m) &&
      m.owns(tp) &&
      (m.phase === 'stable' || m.phase === 'revoking')
    );
  }

  /**
   * Strict key order, at a handler start of a keyed job J (origin partition p, origin offset o):
   * - `parked-start`: no job of a parked key starts before its head resolved. The key is parked
   *   behind H from the acknowledgement of a tier record of H carrying `strand-parks-key` until H
   *   resolves (a run of it succeeds, or its DLQ record is acknowledged); J ≠ H with o above H's
   *   origin offset may not start meanwhile.
   * - `strict-overlap`: no two unresolved jobs of one key (origin partition) run at once. Only
   *   runs of the partition's owner (the coordinator's, in the run's ownership) count: a member
   *   out of the group (expelled, crashed, dead), or one whose handler outlived its ownership, may
   *   overlap the next owner (at least once), and a job already resolved may run again.
   */
  private keyRunStart(
    inst: Instance,
    job: Job<unknown>,
    tp: string,
    rid: number,
    epoch: Epoch | undefined,
  ): KeyRun | undefined {
    if (!this.strict || job.key === null) return undefined;
    const origin = this.originOf(job);
    if (!origin) return undefined;
    const lane = `${origin.partition}\0${job.key}`;
    const run: KeyRun = {
      rid,
      inst,
      tp,
      epoch,
      lane,
      key: job.key,
      partition: origin.partition,
      origin: origin.offset,
    };
    if (this.isReleased(job)) {
      this.count('released-runs');
      this.checkDeadKey(inst, job, lane);
    }
    // Only a violation reads it.
    const what = () =>
      `${inst.id} starts ${tp}@${job.offset}${this.isReleased(job) ? ' (released)' : ''} rid ${rid} (key ${job.key}, origin ${origin.partition}@${origin.offset})`;
    for (const [head, headOffset] of this.heads.get(lane) ?? []) {
      if (head === rid || headOffset >= origin.offset || this.resolved(head)) continue;
      this.violation(
        'parked-start',
        `${what()} while its key is parked behind rid ${head} (origin offset ${headOffset}), not resolved`,
      );
    }
    let runs = this.keyRuns.get(lane);
    if (!runs) {
      runs = new Set();
      this.keyRuns.set(lane, runs);
    }
    if (!this.resolved(rid) && this.legit(inst, tp, epoch))
      for (const other of runs) {
        if (!other.inst.alive) {
          runs.delete(other);
          continue;
        }
        if (other.rid === rid || this.resolved(other.rid) || !this.legit(other.inst, other.tp, other.epoch))
          continue;
        this.violation(
          'strict-overlap',
          `${what()} while ${other.inst.id} runs rid ${other.rid} (${other.tp}, origin offset ${other.origin}) of its key; neither resolved`,
        );
      }
    runs.add(run);
    return run;
  }

  /**
   * `dead-key-ran`: with `onDeadKey: 'dead-letter'` no parked job runs once its key is dead: the
   * head it waits behind (the key's state) was dead-lettered and never succeeded, or a job
   * released before it from the same state was dead-lettered by the same ownership (that is
   * known only to the release under way: after a crash the next owner runs the rest, at least once).
   */
  private checkDeadKey(inst: Instance, job: Job<unknown>, lane: string): void {
    if (this.cfg.worker.onDeadKey !== 'dead-letter') return;
    const state = this.keyState.get(lane);
    const head = this.jobs[this.ridOf(state?.head ?? undefined)];
    const what = () =>
      `${inst.id} runs released ${job.topic}:${job.partition}@${job.offset} (key ${job.key})`;
    if (head?.dlq && !head.succeeded)
      this.violation('dead-key-ran', `${what()}; the head it waits behind, ${state?.head}, is dead`);
    const dead = this.deadFollower.get(lane);
    if (
      dead &&
      dead.version === state?.version &&
      dead.inst === inst &&
      inst.epochs.get(tpOf(job.topic, job.partition)) === dead.epoch
    )
      this.violation('dead-key-ran', `${what()}; rid ${dead.rid}, released before it, is dead`);
  }

  /**
   * A run ended. `strict-order`: at a job's first success, every job of its key before it in its
   * job-topic partition resolved (succeeded or dead-lettered).
   */
  private keyRunEnd(run: KeyRun | undefined, error: unknown): void {
    if (!run) return;
    this.keyRuns.get(run.lane)?.delete(run);
    if (error !== undefined || this.jobs[run.rid]?.succeeded) return;
    const earlier: { e: LogEntry; resolvedAt: number | undefined }[] = [];
    for (const e of this.cluster.log(tpOf(this.topics.main, run.partition))) {
      if (e.offset >= run.origin) break;
      if (e.rid < 0 || e.rid === run.rid || e.key === null || e.key.toString('utf8') !== run.key) continue;
      earlier.push({ e, resolvedAt: this.resolved(e.rid) ? this.time.now : undefined });
    }
    const e = unresolvedBefore(earlier, this.time.now)?.e;
    if (e)
      this.violation(
        'strict-order',
        `${run.inst.id} completed rid ${run.rid} (key ${run.key}, origin ${run.partition}@${run.origin}) first, before rid ${e.rid} (${run.partition}@${e.offset}) of its key resolved`,
      );
  }

  /**
   * The core's tracker a run starting now belongs to: its outcome counts for that ownership, even
   * if it ends after the worker took the partition afresh (seed 36503: a release of the old
   * ownership still ran a parked job that the new one then ran again, at least once).
   */
  private runOwner(inst: Instance, tp: string, offset: number): object | undefined {
    return this.pendingTracker(inst, tp, offset) ?? this.trackerOf(inst, tp);
  }

  private onEnd(
    inst: Instance,
    epoch: Epoch | undefined,
    owner: object | undefined,
    tp: string,
    offset: number,
    rid: number,
    error: unknown,
  ): void {
    if (epoch) epoch.running.set(offset, (epoch.running.get(offset) ?? 1) - 1);
    if (error === undefined) {
      this.jobs[rid]!.succeeded = true;
      epoch?.outcomes.set(offset, owner);
      inst.failedRuns.delete(`${tp}@${offset}`);
    } else inst.failedRuns.set(`${tp}@${offset}`, owner);
    this.trace(inst.id, `end ${tp}@${offset} rid ${rid}: ${error === undefined ? 'ok' : nameOf(error)}`);
  }

  // ---- produced records -----------------------------------------------------------------------

  private onProduce(inst: Instance, topic: string, m: OutgoingRecord, sentAt: number, acked: boolean): void {
    if (headerString(m.headers, HEADERS.release) !== undefined) {
      this.onRelease(inst, topic, m, acked);
      return;
    }
    const at = headerString(m.headers, SIM_AT);
    const isTier = this.topics.tiers.includes(topic);
    const bucket = this.topics.delays?.find((b) => b.topic === topic);
    const isMove = bucket !== undefined || topic === this.topics.main;
    if (!isTier && !isMove && topic !== this.topics.dlq) {
      this.violation('bad-topic', `${inst.id} produced to ${topic}`);
      return;
    }
    if (!at) {
      this.violation('headers-lost', `${inst.id} produced to ${topic} without the consumed record's headers`);
      return;
    }
    const i = at.lastIndexOf(':');
    let srcTp = at.slice(0, i);
    let srcOffset = Number(at.slice(i + 1));
    let src = this.cluster.log(srcTp)[srcOffset]!;
    // A released job (strict key order) carries its parked record's position: its source is the
    // job-topic record that was parked.
    const released = src.topic === this.topics.parked;
    if (released) {
      const from = src.src ?? '';
      const j = from.lastIndexOf(':');
      srcTp = from.slice(0, j);
      srcOffset = Number(from.slice(j + 1));
      src = this.cluster.log(srcTp)[srcOffset]!;
    }
    const job = this.jobs[src.rid]!;
    const key = m.key === null ? null : Buffer.isBuffer(m.key) ? m.key : Buffer.from(m.key);
    if ((key === null) !== (src.key === null) || (key && src.key && !key.equals(src.key)))
      this.violation('key-changed', `${srcTp}@${srcOffset} routed to ${topic} with another key`);
    if ((m.value === null) !== (src.value === null) || (m.value && src.value && !m.value.equals(src.value)))
      this.violation('value-changed', `${srcTp}@${srcOffset} routed to ${topic} with other value bytes`);
    if (headerString(m.headers, HEADERS.jobId) !== headerString(src.headers, HEADERS.jobId))
      this.violation('job-id-changed', `${srcTp}@${srcOffset} routed to ${topic} with another job id`);
    for (const h of [HEADERS.parkedKey, HEADERS.parkedBehind])
      if (headerString(m.headers, h) !== undefined)
        this.violation('parked-headers', `${srcTp}@${srcOffset} routed to ${topic} with ${h}`);
    const parks = headerString(m.headers, HEADERS.parksKey) !== undefined;
    let route = MOVE;
    if (bucket && !this.isBucket(src.topic)) {
      // A retry-later longer than its tier, sent to wait in the delay buckets (failure/router.ts).
      this.checkRetryToBucket(src, bucket, m, sentAt);
      this.checkParksKey(src, topic, m, parks);
      route = parks ? PARKS : TIER;
    } else if (isTier && this.isBucket(src.topic)) {
      this.checkRetryFromBucket(src, topic, m, sentAt);
      this.checkParksKey(src, topic, m, parks);
    } else if (isMove) {
      this.checkDelayMove(src, topic, bucket?.ms, m, sentAt);
    } else if (isTier) {
      const dueAt = Number(headerString(m.headers, HEADERS.dueAt));
      const attempt = Number(headerString(m.headers, HEADERS.attempt));
      if (!Number.isFinite(dueAt) || !Number.isInteger(attempt) || attempt < 1)
        this.violation('tier-headers', `${srcTp}@${srcOffset} routed to ${topic} without due-at/attempt`);
      this.checkRetryLater(src, topic, m, dueAt, sentAt);
      // A tier partition waits at its head until it is due: nothing waits there longer than the
      // longest tier (a longer retry-later goes through the delay buckets, or is cut to it).
      const longest = Math.max(...this.cfg.worker.tiers);
      if (dueAt - sentAt > longest)
        this.violation(
          'tier-overdue',
          `${srcTp}@${srcOffset} routed to ${topic} due ${dueAt - sentAt} ms after it was sent (longest tier ${longest} ms): it holds the tier partition`,
        );
      this.checkParksKey(src, topic, m, parks);
      route = parks ? PARKS : TIER;
    } else {
      route = DLQ;
      const reason = headerString(m.headers, HEADERS.deadReason) ?? '';
      if (reason === 'retry-later-exhausted') {
        const hops = Number(headerString(src.headers, HEADERS.retryLater) ?? 0);
        if (hops < this.cfg.worker.maxRetryLater || this.cfg.worker.tiers.length === 0)
          this.violation(
            'retry-later-exhausted-early',
            `${srcTp}@${srcOffset} (rid ${src.rid}) dead-lettered as retry-later-exhausted after ${hops} hops (maxRetryLater ${this.cfg.worker.maxRetryLater})`,
          );
      }
      if (parks)
        this.violation('dlq-parks-key', `${srcTp}@${srcOffset} dead-lettered with ${HEADERS.parksKey}`);
      if (reason === 'key-dead') this.checkKeyDead(src, m, released);
      else if (released && src.key !== null) {
        const lane = `${src.partition}\0${src.key.toString('utf8')}`;
        const version = this.keyState.get(lane)?.version;
        const epoch = inst.epochs.get(srcTp);
        if (version !== undefined && epoch)
          this.deadFollower.set(lane, { rid: src.rid, version, inst, epoch });
      } else if (reason.startsWith('undecodable') && job.kind === 'ok')
        this.violation('dlq-decodable', `${srcTp}@${srcOffset} (rid ${src.rid}) dead-lettered as ${reason}`);
      // An undecodable job parked behind a dead key is dead-lettered with it (not decoded).
      if (job.kind !== 'ok' && !reason.startsWith('undecodable') && reason !== 'key-dead')
        this.violation('dlq-reason', `undecodable ${srcTp}@${srcOffset} dead-lettered as "${reason}"`);
      job.dlq = true;
    }
    const partition = m.partition ?? this.cluster.partitionFor(topic, m.key);
    const entry = this.cluster.append(topic, partition, {
      key,
      value: m.value,
      headers: m.headers,
      rid: src.rid,
      src: `${srcTp}:${srcOffset}`,
      skew: inst.skew,
    });
    const from = `${srcTp}:${srcOffset}`;
    this.forwarded.set(from, (this.forwarded.get(from) ?? 0) | route);
    if (parks) this.addHead(entry);
    const epoch = inst.epochs.get(srcTp);
    // The router batches sends for up to 2 ms: a send at `sentAt` was routed no earlier than that.
    // The send of a failed run counts for the ownership the run started in (seeds 55530, 59663: the
    // worker dropped the partition while the send was under way and took it afresh, and the new
    // ownership ran the job again: at least once); a released job is not among the core's pending
    // items, and a record fetched again is there twice.
    const ran = `${srcTp}@${srcOffset}`;
    const failedIn = inst.failedRuns.get(ran);
    inst.failedRuns.delete(ran);
    if (epoch && sentAt - 2 >= epoch.since)
      epoch.outcomes.set(
        srcOffset,
        failedIn ?? this.pendingTracker(inst, srcTp, srcOffset) ?? this.trackerOf(inst, srcTp),
      );
    this.count(isMove ? 'delay-moves' : isTier ? 'tier-records' : 'dlq-records');
    this.trace(
      inst.id,
      `wrote ${topic}:${partition}@${entry.offset} from ${srcTp}@${srcOffset}${released ? ' (released)' : ''} rid ${src.rid}${parks ? ' parks its key' : ''}${route === DLQ ? ` (${headerString(m.headers, HEADERS.deadReason)})` : ''}`,
    );
  }

  /**
   * `strand-parks-key` on a tier record: only in strict seeds (`parks-relaxed`), on every hop of a
   * keyed job-topic job (or released job) and on none of a job without a key (`parks-missing`,
   * `parks-unkeyed`); a later hop keeps its source's (`parks-dropped`).
   */
  private checkParksKey(src: LogEntry, topic: string, m: OutgoingRecord, parks: boolean): void {
    const at = `${src.topic}:${src.partition}@${src.offset} (rid ${src.rid}) routed to ${topic}`;
    if (parks && !this.strict) this.violation('parks-relaxed', `${at} with ${HEADERS.parksKey}`);
    if (!this.strict) return;
    if (src.key === null) {
      if (parks) this.violation('parks-unkeyed', `${at} with ${HEADERS.parksKey} but no key`);
      return;
    }
    if (src.topic === this.topics.main) {
      if (!parks) this.violation('parks-missing', `${at} without ${HEADERS.parksKey}`);
    } else if (parks !== (headerString(src.headers, HEADERS.parksKey) !== undefined))
      this.violation('parks-dropped', `${at}: ${HEADERS.parksKey} ${parks ? 'added' : 'dropped'} on a hop`);
    if (parks && headerString(m.headers, HEADERS.originTopic) !== this.topics.main)
      this.violation('parks-origin', `${at} parks its key but its origin topic is not the job topic`);
  }

  /** A tier record with `strand-parks-key` was acknowledged: its key (origin partition) waits behind its job. */
  private addHead(entry: LogEntry): void {
    const partition = headerString(entry.headers, HEADERS.originPartition);
    const offset = Number(headerString(entry.headers, HEADERS.originOffset));
    if (entry.key === null || partition === undefined) return;
    const lane = `${partition}\0${entry.key.toString('utf8')}`;
    let heads = this.heads.get(lane);
    if (!heads) {
      heads = new Map();
      this.heads.set(lane, heads);
    }
    const known = heads.get(entry.rid);
    if (known === undefined || offset < known) heads.set(entry.rid, offset);
    this.headWritten.set(`${partition}\0${entry.rid}`, this.writes++);
  }

  /**
   * A `key-dead` dead letter: only with `onDeadKey: 'dead-letter'`, of a released job (it was
   * parked), naming a dead-lettered job of its key as its cause (`key-dead`).
   */
  private checkKeyDead(src: LogEntry, m: OutgoingRecord, released: boolean): void {
    const at = `${src.topic}:${src.partition}@${src.offset} (rid ${src.rid}) dead-lettered as key-dead`;
    if (!this.strict || this.cfg.worker.onDeadKey !== 'dead-letter')
      this.violation('key-dead', `${at} with onDeadKey ${this.cfg.worker.onDeadKey}`);
    if (!released) this.violation('key-dead', `${at}, but it was not released from parking`);
    this.count('key-dead');
    const cause = headerString(m.headers, HEADERS.deadCause);
    const rid = this.ridOf(cause);
    const dead = this.jobs[rid];
    if (!dead?.dlq) this.violation('key-dead', `${at}: its cause ${cause} was not dead-lettered`);
    else if (dead.entry.key === null || src.key === null || !dead.entry.key.equals(src.key))
      this.violation('key-dead', `${at}: its cause ${cause} has another key`);
  }

  /**
   * A release record (strict key order): to the job topic, to the partition its head came from,
   * with the head's key and no value, after the head ended as it says (`release-*`).
   */
  private onRelease(inst: Instance, topic: string, m: OutgoingRecord, acked: boolean): void {
    const head = headerString(m.headers, HEADERS.release)!;
    const outcome = headerString(m.headers, HEADERS.releaseOutcome);
    const rid = this.ridOf(head);
    const job = this.jobs[rid];
    const what = `${inst.id} releases ${head} to ${topic}:${m.partition}`;
    const key = m.key === null ? null : Buffer.isBuffer(m.key) ? m.key.toString('utf8') : m.key;
    if (!this.strict) this.violation('release-relaxed', what);
    if (topic !== this.topics.main || m.partition === undefined || key === null || m.value !== null || !job) {
      this.violation('release-record', `${what}: key ${key}, value ${m.value === null ? 'null' : 'set'}`);
      return;
    }
    const lane = `${m.partition}\0${key}`;
    if (!this.heads.get(lane)?.has(rid))
      this.violation('release-unparked', `${what} (key ${key}): no tier record of it parked that key`);
    if (outcome === 'completed' ? !job.succeeded : outcome === 'dead' ? !job.dlq : true)
      this.violation(
        'release-outcome',
        `${what} as ${outcome}; succeeded ${job.succeeded}, dead-lettered ${job.dlq}`,
      );
    const entry = this.cluster.append(topic, m.partition, {
      key: Buffer.from(key),
      value: null,
      headers: m.headers,
      rid: -1,
      skew: inst.skew,
    });
    this.releases.set(`${tpOf(topic, m.partition)}:${entry.offset}`, {
      head,
      key,
      partition: m.partition,
      version: this.keyState.get(lane)?.version ?? 0,
      seq: this.writes++,
    });
    this.releasesFor.add(`${m.partition}\0${head}`);
    this.lastRelease.set(`${m.partition}\0${rid}`, entry.offset);
    if (acked) this.reportDeferred(inst, `rel\0${head}`);
    this.count('release-records');
    this.trace(
      inst.id,
      `wrote release ${topic}:${m.partition}@${entry.offset} of ${head} (key ${key}, ${outcome})`,
    );
  }

  /** The parking partition as a reader sees it: what the log cleaner removed is a hole. */
  private parkingView(partition: number): readonly (LogEntry | undefined)[] {
    const log = this.cluster.log(tpOf(this.topics.parked, partition));
    if (this.cleanChance > 0 && this.cleaner.chance(this.cleanChance)) this.clean(partition, log);
    const gone = this.cleaned.get(partition);
    return gone?.size ? log.map((e, i) => (gone.has(i) ? undefined : e)) : log;
  }

  /**
   * Kafka's log cleaner on the compacted parking topic, without its segment and lag limits (less
   * kind than Kafka: it may clean up to a few records short of the end at any read): below that
   * point, a record whose key has a later record below it is removed. Tombstones stay: their
   * retention (`delete.retention.ms`, an hour) is longer than any run.
   */
  private clean(partition: number, log: readonly LogEntry[]): void {
    const end = Math.max(0, log.length - this.cleaner.int(0, 8));
    const keyOf = (e: LogEntry) => e.key?.toString('latin1') ?? '';
    const last = new Map<string, number>();
    for (let o = 0; o < end; o++) last.set(keyOf(log[o]!), o);
    const gone = this.cleaned.get(partition) ?? new Set<number>();
    for (let o = 0; o < end; o++) if (last.get(keyOf(log[o]!))! > o && !gone.has(o)) gone.add(o);
    this.cleaned.set(partition, gone);
    this.count('parking-cleaner-runs');
  }

  /**
   * What an instance wrote to the parking topic (acknowledged, or failed but written): a parked
   * job `f:<offset>` is the job-topic record at that offset of the same partition, key in
   * `strand-parked-key`, value and headers kept (`parked-record`); a key's state `k:<key>` names
   * a job of that key at `headOffset` as its head (`park-state`).
   */
  private onParkingWrite(
    inst: Instance,
    partition: number,
    records: readonly OutgoingRecord[],
    acked: boolean,
  ): LogEntry[] {
    const main = tpOf(this.topics.main, partition);
    const out: LogEntry[] = [];
    for (const r of records) {
      const raw = r.key === null ? '' : Buffer.isBuffer(r.key) ? r.key.toString('utf8') : r.key;
      // Record keys start with the consumer group (groups of one job topic park apart).
      const prefix = `${this.options.groupId}\0`;
      const id = raw.startsWith(prefix) ? raw.slice(prefix.length) : `?${raw}`;
      if (r.partition !== undefined && r.partition !== partition)
        this.violation(
          'parking-partition',
          `${inst.id} writes ${id} to parking partition ${partition} with partition ${r.partition}`,
        );
      let rid = -1;
      let src: string | undefined;
      let text: string;
      if (id.startsWith('f:')) {
        const offset = Number(id.slice(2));
        text = r.value === null ? `unparks job ${partition}@${offset}` : `parks job ${partition}@${offset}`;
        if (r.value !== null) {
          const e = this.cluster.log(main)[offset];
          const parkedKey = headerString(r.headers, HEADERS.parkedKey);
          if (
            !e ||
            e.rid < 0 ||
            headerString(r.headers, SIM_AT) !== `${this.topics.main}:${partition}:${offset}` ||
            e.key?.toString('utf8') !== parkedKey ||
            !e.value ||
            !r.value.equals(e.value) ||
            headerString(r.headers, HEADERS.jobId) !== headerString(e.headers, HEADERS.jobId) ||
            headerString(r.headers, HEADERS.parkedBehind) === undefined
          ) {
            this.violation(
              'parked-record',
              `${inst.id} parks ${id} in partition ${partition}, not the job-topic record ${main}@${offset} (key ${parkedKey})`,
            );
          } else {
            rid = e.rid;
            src = `${main}:${offset}`;
            this.parkedJobs.add(`${partition}:${offset}`);
            this.count('parked-jobs');
            text += ` rid ${rid} key ${parkedKey} behind ${headerString(r.headers, HEADERS.parkedBehind)}`;
          }
        }
      } else if (id.startsWith('k:')) {
        const key = id.slice(2);
        let head: string | null = null;
        let headOffset = -1;
        let releasing = false;
        if (r.value !== null) {
          const state = JSON.parse(r.value.toString('utf8')) as {
            head: string;
            headOffset: number;
            releasing?: unknown;
          };
          headOffset = state.headOffset;
          releasing = state.releasing !== undefined;
          const e = this.cluster.log(main)[state.headOffset];
          if (!e || e.rid !== this.ridOf(state.head) || e.key?.toString('utf8') !== key)
            this.violation(
              'park-state',
              `${inst.id} parks key ${key} of partition ${partition} behind ${state.head} at ${state.headOffset}, not a job of that key there`,
            );
          head = state.head;
          this.parkStates.add(`${partition}\0${head}`);
          if (acked) this.reportDeferred(inst, `park\0${partition}\0${head}`);
        }
        const lane = `${partition}\0${key}`;
        const was = this.keyState.get(lane);
        // A new version of the key's state when it changes (a write sent again is the same one).
        if (head !== null && was?.head) this.count('re-parks');
        if (!was || was.head !== head || was.headOffset !== headOffset)
          this.keyState.set(lane, { head, headOffset, version: (was?.version ?? 0) + 1, releasing });
        else was.releasing = releasing;
        if (acked) this.stateWriteFailures.delete(`${inst.id}|${partition}\0${key}`);
        if (releasing && acked)
          for (const rel of this.releases.values())
            if (
              rel.partition === partition &&
              rel.key === key &&
              rel.head === head &&
              rel.releasingAt === undefined
            ) {
              rel.releasingAt = this.time.now;
              rel.releasingBy = inst;
            }
        text =
          head === null
            ? `unparks key ${key}`
            : releasing
              ? `releases key ${key} (head ${head})`
              : `parks key ${key} behind ${head}`;
      } else {
        this.violation(
          'parking-key',
          `${inst.id} writes a record keyed ${JSON.stringify(id)} to the parking topic`,
        );
        text = `writes ${id}`;
      }
      const entry = this.cluster.append(this.topics.parked, partition, {
        key: Buffer.from(raw),
        value: r.value,
        headers: r.headers,
        rid,
        ...(src !== undefined ? { src } : {}),
      });
      out.push(entry);
      this.count('parking-writes');
      this.trace(inst.id, `parking ${partition}@${entry.offset}: ${text}`);
    }
    return out;
  }

  /**
   * A delayed job moved on from a delay bucket (`src`): only a job's own delay bucket records move
   * (`bad-move`), with their due time (`due-changed`); to the job topic no earlier than that due
   * time and without a hold (`early-move`, `hold-kept`); to a bucket of length L with a hold of L
   * from the send (`bucket-hold`) that ends no later than the due time plus the tolerance and not
   * in the 0 s bucket, which only the producer writes (`bucket-overshoot`, `bucket-zero`).
   */
  private checkDelayMove(
    src: LogEntry,
    topic: string,
    bucketMs: number | undefined,
    m: OutgoingRecord,
    sentAt: number,
  ): void {
    const at = `${src.topic}:${src.partition}@${src.offset} (rid ${src.rid}) moved to ${topic}`;
    if (!this.topics.delays?.some((b) => b.topic === src.topic)) {
      this.violation('bad-move', `${at}, but it is not in a delay bucket`);
      return;
    }
    const dueAt = Number(headerString(m.headers, HEADERS.dueAt));
    // A retried job in the buckets keeps the due time its router gave it; a delayed job its enqueue's.
    const retry = headerString(src.headers, HEADERS.retryTier) !== undefined;
    const due = retry ? Number(headerString(src.headers, HEADERS.dueAt)) : this.jobs[src.rid]!.dueAt;
    if (dueAt !== due) this.violation('due-changed', `${at} due at ${dueAt}`);
    if (retry && bucketMs === undefined)
      this.violation('retry-to-job-topic', `${at}: a retried job goes back to its tier, not the job topic`);
    const hold = headerString(m.headers, HEADERS.holdUntil);
    if (bucketMs === undefined) {
      if (sentAt < dueAt) this.violation('early-move', `${at} ${dueAt - sentAt} ms before it is due`);
      if (hold !== undefined) this.violation('hold-kept', `${at} with ${HEADERS.holdUntil} ${hold}`);
      return;
    }
    if (bucketMs === 0) this.violation('bucket-zero', `${at}: the worker never writes the 0 s bucket`);
    const holdUntil = Number(hold);
    if (!(holdUntil - sentAt <= bucketMs && holdUntil - sentAt >= bucketMs - ROUTER_LINGER_MS))
      this.violation('bucket-hold', `${at} held until ${holdUntil - sentAt} ms after the send`);
    if (holdUntil > dueAt + overshoot(bucketMs) + ROUTER_LINGER_MS)
      this.violation('bucket-overshoot', `${at} held ${holdUntil - dueAt} ms past its due time`);
  }

  private isBucket(topic: string): boolean {
    return this.topics.delays?.some((b) => b.topic === topic) === true;
  }

  /**
   * A retry-later longer than the tier it goes to waits in a delay bucket first (a tier partition
   * paused at a head due later would hold every due retry behind it): only a delay longer than that
   * tier's goes there (`bucket-short`), the largest bucket that fits, held for its length from the
   * send (`bucket-hold`, as a move), naming its tier (`retry-tier`); the hop rules of any tier record
   * apply (`checkRetryLater`).
   */
  private checkRetryToBucket(src: LogEntry, bucket: DelayBucket, m: OutgoingRecord, sentAt: number): void {
    const at = `${src.topic}:${src.partition}@${src.offset} (rid ${src.rid}) routed to ${bucket.topic}`;
    this.count('retry-later-buckets');
    const tier = Number(headerString(m.headers, HEADERS.retryTier));
    const tierTopic = this.topics.tiers[tier - 1];
    if (!tierTopic) {
      this.violation('retry-tier', `${at} with ${HEADERS.retryTier} ${tier}`);
      return;
    }
    const dueAt = Number(headerString(m.headers, HEADERS.dueAt));
    this.checkRetryLater(src, tierTopic, m, dueAt, sentAt);
    if (dueAt - sentAt <= this.cfg.worker.tiers[tier - 1]! - ROUTER_LINGER_MS)
      this.violation('bucket-short', `${at}, due in ${dueAt - sentAt} ms: within its tier's delay`);
    const holdUntil = Number(headerString(m.headers, HEADERS.holdUntil));
    if (!(holdUntil - sentAt <= bucket.ms && holdUntil - sentAt >= bucket.ms - ROUTER_LINGER_MS))
      this.violation('bucket-hold', `${at} held until ${holdUntil - sentAt} ms after the send`);
    // Routed at most ROUTER_LINGER_MS before the send, so the delay it chose for was at least this.
    const fits = chooseBucket(this.topics.delays ?? [], dueAt - sentAt);
    if (fits.kind === 'bucket' && fits.bucket.ms > bucket.ms)
      this.violation('bucket-small', `${at}, while ${fits.bucket.topic} fits its delay`);
  }

  /**
   * A retried job leaves the delay buckets for the tier its `strand-retry-tier` names (`retry-tier`),
   * not before its due time (`early-move`), with that due time (`due-changed`), without the bucket's
   * headers (`hold-kept`).
   */
  private checkRetryFromBucket(src: LogEntry, topic: string, m: OutgoingRecord, sentAt: number): void {
    const at = `${src.topic}:${src.partition}@${src.offset} (rid ${src.rid}) moved to ${topic}`;
    this.count('retry-later-from-buckets');
    const tier = Number(headerString(src.headers, HEADERS.retryTier));
    if (this.topics.tiers[tier - 1] !== topic)
      this.violation('retry-tier', `${at}, but its ${HEADERS.retryTier} is ${tier}`);
    const dueAt = Number(headerString(m.headers, HEADERS.dueAt));
    if (dueAt !== Number(headerString(src.headers, HEADERS.dueAt)))
      this.violation('due-changed', `${at} due at ${dueAt}`);
    if (sentAt < dueAt) this.violation('early-move', `${at} ${dueAt - sentAt} ms before it is due`);
    for (const h of [HEADERS.holdUntil, HEADERS.retryTier])
      if (headerString(m.headers, h) !== undefined) this.violation('hold-kept', `${at} with ${h}`);
  }

  /**
   * A tier record routed from `src`: `strand-retry-later` is the source's, or one more for a
   * retry-later hop, and never more than `maxRetryLater` (`retry-later-count`, `retry-later-cap`);
   * a retry-later hop waits at least the first tier's delay (`retry-later-floor`) and any other
   * hop its tier's delay (`tier-delay`). Due-at is taken when the job is routed, at most
   * ROUTER_LINGER_MS before the send.
   */
  private checkRetryLater(
    src: LogEntry,
    topic: string,
    m: OutgoingRecord,
    dueAt: number,
    sentAt: number,
  ): void {
    const w = this.cfg.worker;
    const at = `${src.topic}:${src.partition}@${src.offset} (rid ${src.rid}) routed to ${topic}`;
    const before = Number(headerString(src.headers, HEADERS.retryLater) ?? 0);
    const hops = Number(headerString(m.headers, HEADERS.retryLater) ?? 0);
    const wait = dueAt - sentAt;
    if (hops === before + 1) {
      if (hops > w.maxRetryLater)
        this.violation(
          'retry-later-cap',
          `${at} with ${HEADERS.retryLater}: ${hops} > maxRetryLater ${w.maxRetryLater}`,
        );
      if (wait < w.tiers[0]! - ROUTER_LINGER_MS)
        this.violation(
          'retry-later-floor',
          `${at} as retry-later hop ${hops}, due ${wait} ms after it was sent (first tier ${w.tiers[0]} ms)`,
        );
    } else if (hops === before) {
      const delay = w.tiers[this.topics.tiers.indexOf(topic)]!;
      if (wait < delay - ROUTER_LINGER_MS || wait > delay)
        this.violation('tier-delay', `${at}, due ${wait} ms after it was sent (tier delay ${delay} ms)`);
    } else
      this.violation('retry-later-count', `${at} with ${HEADERS.retryLater}: ${hops} (source: ${before})`);
  }

  // ---- instances ------------------------------------------------------------------------------

  private live(): Instance[] {
    return this.instances.filter((i) => i.alive && !i.stopping);
  }

  private startInstance(): Instance {
    const n = ++this.instanceSeq;
    const id = `w${n}`;
    const clock = new ChildClock(this.time, id);
    const rng = Rng.derive(this.seed, 100 + n);
    const port = new MemberPort(id, this.group, clock, rng);
    const inst = new Instance(id, clock, port);
    inst.skew = this.skewRng.int(-this.maxSkew, this.maxSkew);
    this.instances.push(inst);
    this.byPort.set(port, inst);
    const s = this.cfg.services;
    const producer = new SimProducer(
      clock,
      rng,
      this.outages,
      { latencyMax: s.produceLatencyMax, failRate: s.produceFailRate, ambiguousRate: s.ambiguousProduceRate },
      () => inst.alive,
      (topic, m, sentAt, acked) => this.onProduce(inst, topic, m, sentAt, acked),
      (text) => this.trace(id, text),
    );
    const parking = new SimParkingPort(
      clock,
      // Its own stream: seeds whose core never parks keep every other draw.
      Rng.derive(this.seed, 200 + n),
      this.outages,
      { latencyMax: s.produceLatencyMax, failRate: s.produceFailRate, ambiguousRate: s.ambiguousProduceRate },
      () => inst.alive,
      (partition) => this.parkingView(partition),
      (partition, records, _sentAt, acked) => this.onParkingWrite(inst, partition, records, acked),
      (text) => this.trace(id, text),
      (partition, records) => this.onParkingFail(inst, partition, records),
      this.parkingEpochs,
    );
    // Deferred records (fairness) are read back from the job topic's log, as the parking port reads its own.
    const reader = new SimParkingPort(
      clock,
      Rng.derive(this.seed, 300 + n),
      this.outages,
      { latencyMax: s.produceLatencyMax, failRate: s.produceFailRate, ambiguousRate: 0 },
      () => inst.alive,
      (partition) => this.cluster.log(tpOf(TOPIC, partition)),
      () => [],
      (text) => this.trace(id, text),
    );
    const decoder = new SimDecoder(clock, rng, this.outages, s.registryLatencyMax);
    const store = this.cfg.worker.idempotency
      ? new SimStore(this.store, clock, rng, this.outages, s.storeLatencyMax)
      : undefined;
    const options = {
      ...this.options,
      ...(this.cfg.batch
        ? {
            batchHandler: (jobs: readonly Job<unknown>[], ctx: BatchContext<unknown>) =>
              this.handleBatch(inst, jobs, ctx),
          }
        : {
            handler: (job: Job<unknown>, ctx: JobContext) =>
              this.eos
                ? this.handle(inst, job, ctx).then(() => ctx.enqueue(followUp(job), {}))
                : this.handle(inst, job, ctx),
          }),
    } as ResolvedWorkerOptions;
    inst.core = new WorkerCore({
      options,
      topics: this.topics,
      consumer: port,
      producer,
      parking,
      ...(this.cfg.tenants ? { reader } : {}),
      decoder,
      store,
      clock,
      logger: silentLogger,
      metrics: new QueueMetrics({ defaultMetrics: false }),
      workerId: id,
      transactions: this.eos
        ? new SimTransactionPort(
            clock,
            Rng.derive(this.seed, 300 + n),
            s.produceLatencyMax,
            () => inst.alive,
            this.txEpochs,
            (tp, records, offset) => this.onRound(inst, tp, records, offset),
            (text) => this.trace(id, text),
            (tp) => {
              const epoch = inst.epochs.get(tp);
              const c = this.group.committed.get(tp);
              if (epoch) epoch.mapDone = c ? decodeOffsetMap(c.offset, c.metadata) : new Set();
            },
          )
        : undefined,
      ...(this.cfg.worker.metadataMaxChars !== undefined
        ? { metadataMaxChars: this.cfg.worker.metadataMaxChars }
        : {}),
      random: rng.fn,
    });
    // Which ownership (tracker) reported which offsets done, for `completion-dropped`.
    const core = inst.core;
    this.watchTenantShares(inst, core);
    core.on('job:started', (job) =>
      this.startedBy.set(job, this.trackerOf(inst, tpOf(job.topic, job.partition))),
    );
    const ended = (job: Job<unknown>) => this.doneOrDeferred(inst, job, this.startedBy.get(job), false);
    core.on('job:completed', ended);
    // Exactly once: a routed job's outcome is staged for its round (its key is free from then on).
    const staged = (topic: string, partition: number, offset: string) => {
      if (!this.eos) return;
      const tp = tpOf(topic, partition);
      inst.epochs
        .get(tp)
        ?.outcomes.set(
          Number(offset),
          this.pendingTracker(inst, tp, Number(offset)) ?? this.trackerOf(inst, tp),
        );
      this.stagedAt.set(`${id}|${tpOf(topic, partition)}:${offset}`, this.time.now);
    };
    core.on('job:retried', (job) => {
      staged(job.topic, job.partition, job.offset);
      this.doneOrDeferred(inst, job, this.startedBy.get(job), true);
    });
    core.on('job:dead', (item) => {
      staged(item.topic, item.partition, item.offset);
      const deadRid = this.cluster.log(tpOf(item.topic, item.partition))[Number(item.offset)]?.rid ?? -1;
      if (this.eos && deadRid >= 0) this.deadStaged.add(deadRid);
      this.trace(id, `event dead ${item.topic}:${item.partition}@${item.offset}`);
      const tracker = (item as { tracker?: object }).tracker;
      const headers = (item as { headers?: Record<string, string> }).headers ?? {};
      this.doneOrDeferred(inst, { ...item, headers }, tracker, false);
    });
    core.on('job:parked', (item, head) => {
      this.trace(id, `event parked ${item.topic}:${item.partition}@${item.offset} behind ${head}`);
      const tracker = (item as { tracker?: object }).tracker;
      this.reportedDone(inst, tpOf(item.topic, item.partition), Number(item.offset), tracker);
    });
    core.on('job:duplicate', (job) => {
      this.trace(id, `event duplicate ${job.topic}:${job.partition}@${job.offset}`);
      const tp = tpOf(job.topic, job.partition);
      const offset = Number(job.offset);
      this.doneOrDeferred(inst, job, this.pendingTracker(inst, tp, offset), false);
    });
    if (this.cfg.userFaults?.listenerThrows) {
      // User listeners that throw: the core logs and ignores them (emitGuarded).
      const u = this.userRng;
      core.on('job:completed', () => {
        if (u.chance(0.3)) throw new Error('listener bug');
      });
      core.on('job:failed', () => {
        if (u.chance(0.3)) throw 'listener string';
      });
      core.on('job:started', () => {
        if (u.chance(0.1)) throw hostileObject();
      });
      core.on('commit', () => {
        if (u.chance(0.2)) throw null;
      });
    }
    this.trace(id, 'starts');
    this.count('instances');
    inst.core
      .start()
      .catch((e: unknown) => this.violation('start-failed', `${id}.start() rejected: ${String(e)}`));
    return inst;
  }

  private kill(inst: Instance): void {
    inst.alive = false;
    inst.clock.dispose();
    inst.port.kill();
    inst.epochs.clear();
    this.trace(inst.id, 'KILLED (process crash)');
    this.count('kills');
  }

  private gracefulStop(inst: Instance, then?: () => void): void {
    inst.stopping = true;
    this.trace(inst.id, 'stop()');
    this.count('stops');
    inst.core.stop({ timeoutMs: this.cfg.worker.shutdownTimeoutMs }).then(
      () => {
        if (!inst.alive) return;
        inst.stopped = true;
        this.trace(inst.id, 'stopped; the process exits');
        // The process exits: whatever still ran in it ends here.
        inst.alive = false;
        inst.port.alive = false;
        inst.clock.dispose();
        inst.epochs.clear();
        then?.();
      },
      (e: unknown) => this.violation('stop-failed', `${inst.id}.stop() rejected: ${String(e)}`),
    );
  }

  /** Starts a replacement later if there is room for one. */
  private replaceLater(): void {
    this.time.schedule(
      () => {
        if (this.phase === 'chaos' || this.phase === 'quiet')
          if (this.live().length < this.cfg.members) this.startInstance();
      },
      this.faultRng.int(50, 1000),
    );
  }

  // ---- jobs and faults ------------------------------------------------------------------------

  private enqueue(): void {
    const c = this.cfg;
    const r = this.rng;
    const rid = this.jobs.length;
    const key = r.chance(c.nullKeyRate) ? null : `k${r.int(0, c.keys - 1)}`;
    const kind: ValueKind = r.chance(c.undecodableRate)
      ? r.pick(['bad-magic', 'unknown-schema', 'truncated'] as const)
      : 'ok';
    const value = encodeValue(kind, rid, r.pick(KNOWN_SCHEMAS), r.int(0, 60));
    const headers: Record<string, string> = {
      [HEADERS.jobId]: `job-${rid}`,
      [HEADERS.enqueuedAt]: String(this.time.now),
    };
    // A delayed job, written as the producer does: the largest bucket not longer than its delay.
    let topic = TOPIC;
    let dueAt: number | undefined;
    const d = c.delays;
    if (d && this.topics.delays && this.delayRng.chance(d.rate)) {
      dueAt = this.time.now + this.delayRng.int(1, d.maxMs);
      const next = chooseBucket(this.topics.delays, dueAt - this.time.now);
      const bucket = next.kind === 'bucket' ? next.bucket : this.topics.delays[0]!;
      topic = bucket.topic;
      headers[HEADERS.dueAt] = String(dueAt);
      headers[HEADERS.holdUntil] = String(this.time.now + bucket.ms);
    }
    const partition = this.cluster.partitionFor(topic, key);
    if (r.chance(c.markerRate))
      this.cluster.append(topic, partition, { key: null, value: null, headers: {}, marker: true, rid: -1 });
    const entry = this.cluster.append(topic, partition, {
      key: key === null ? null : Buffer.from(key),
      value,
      headers,
      rid,
      skew: this.enqueueSkew,
    });
    const x = this.stickyRng;
    const head = c.slowHeads && !this.headed.has(partition);
    this.headed.add(partition);
    const sticky: Sticky | undefined = head
      ? 'slow-first'
      : x.chance(c.stickyRate)
        ? x.weighted(c.stickies)
        : undefined;
    this.jobs.push({
      rid,
      kind,
      entry,
      sticky,
      succeeded: false,
      dlq: false,
      runs: 0,
      ...(dueAt !== undefined ? { dueAt } : {}),
    });
    this.maxRecordBytes = Math.max(this.maxRecordBytes, value.length + (key?.length ?? 0) + 64);
    if (r.chance(c.markerRate))
      this.cluster.append(topic, partition, { key: null, value: null, headers: {}, marker: true, rid: -1 });
  }

  private outage(name: 'registry' | 'store' | 'produce' | 'commit', ms: number): void {
    this.outageDepth[name]++;
    this.applyOutages();
    this.trace('fault', `${name} outage for ${ms} ms`);
    this.time.schedule(() => {
      this.outageDepth[name] = Math.max(0, this.outageDepth[name] - 1);
      this.applyOutages();
      if (this.outageDepth[name] === 0) this.trace('fault', `${name} back`);
    }, ms);
  }

  private applyOutages(): void {
    const d = this.outageDepth;
    this.outages.registry = d.registry > 0;
    this.outages.store = d.store > 0;
    this.outages.produce = d.produce > 0;
    this.modelFaults.commitOutage = d.commit > 0;
  }

  private fault(): void {
    if (this.phase !== 'chaos') return;
    const r = this.faultRng;
    const kind = r.weighted(this.cfg.faultWeights) as FaultKind;
    this.count(`fault:${kind}`);
    const live = this.live();
    switch (kind) {
      case 'rebalance':
        if (this.group.members.length > 0) {
          this.trace('fault', 'rebalance (metadata change)');
          this.group.trigger('metadata change');
        }
        return;
      case 'join':
        if (live.length < this.cfg.members) this.startInstance();
        return;
      case 'leave':
        if (live.length > 0) this.gracefulStop(r.pick(live), () => this.replaceLater());
        return;
      case 'kill':
        if (live.length > 0) {
          this.kill(r.pick(live));
          this.replaceLater();
        }
        return;
      case 'consumer-crash':
        if (live.length > 0) r.pick(live).port.crash(r.chance(0.5));
        return;
      case 'store-outage':
        this.outage('store', r.int(50, 1500));
        return;
      case 'produce-outage':
        this.outage('produce', r.int(20, 1000));
        return;
      case 'commit-outage':
        this.outage('commit', r.int(20, 1000));
        return;
      case 'registry-outage':
        this.outage('registry', r.int(20, 1500));
        return;
      case 'pause': {
        if (live.length === 0) return;
        const inst = r.pick(live);
        this.trace(inst.id, 'core.pause()');
        inst.core.pause();
        inst.clock.setTimeout(
          () => {
            if (inst.alive && !inst.stopping) {
              this.trace(inst.id, 'core.resume()');
              inst.core.resume();
            }
          },
          r.int(10, 300),
        );
        return;
      }
      case 'burst': {
        const n = r.int(1, 5);
        this.trace('fault', `burst of ${n} jobs`);
        for (let i = 0; i < n; i++) this.enqueue();
        return;
      }
    }
  }

  private resubscribe(failures: number): void {
    if (this.phase !== 'chaos') return;
    const live = this.live();
    if (live.length === 0) return;
    const inst = live[this.faultRng.int(0, live.length - 1)]!;
    if (inst.resubscribing) return;
    inst.resubscribing = true;
    this.trace(inst.id, `consumeDelayBuckets (subscribe fails ${failures} times)`);
    this.count('resubscribes');
    inst.port.resubscribeFailures = failures;
    inst.core
      .consumeDelayBuckets(this.topics.delays ?? [])
      .catch((e: unknown) => this.violation('resubscribe-failed', `${inst.id}: ${String(e)}`))
      .finally(() => {
        inst.resubscribing = false;
      });
  }

  /**
   * Readiness (`Worker.ready`: joined, no partition stalled on its parked keys) is false while the
   * worker cannot make progress: not for longer than a rebalance may take while its member is out
   * of the group (`ready-while-out`), or while it holds every job back for a rebalance
   * (`ready-while-held`).
   */
  private checkReadiness(inst: Instance): void {
    const core = inst.core;
    const ready = core.state.running && core.joined && core.stalledParking.length === 0;
    const m = this.cfg.model;
    const bound =
      2 * (this.cfg.worker.rebalanceTimeoutMs + m.sessionTimeoutMs + m.groupRebalanceTimeoutMs) + 6000;
    const now = this.time.now;
    const out = ready && !this.group.members.includes(inst.port);
    inst.readyOutSince = out ? (inst.readyOutSince ?? now) : undefined;
    if (inst.readyOutSince !== undefined && now - inst.readyOutSince > bound)
      this.violation(
        'ready-while-out',
        `${inst.id} says ready, out of the group for ${now - inst.readyOutSince} ms`,
      );
    const held = ready && core.state.rebalancing;
    inst.readyHeldSince = held ? (inst.readyHeldSince ?? now) : undefined;
    if (inst.readyHeldSince !== undefined && now - inst.readyHeldSince > bound)
      this.violation(
        'ready-while-held',
        `${inst.id} says ready, starting no job for a rebalance for ${now - inst.readyHeldSince} ms`,
      );
  }

  private endChaos(): void {
    this.phase = 'quiet';
    this.outageDepth.registry =
      this.outageDepth.store =
      this.outageDepth.produce =
      this.outageDepth.commit =
        0;
    this.applyOutages();
    this.group.calm();
    this.trace('sim', 'quiet period: no more faults');
    if (this.live().length === 0) this.startInstance();
  }

  // ---- checks ---------------------------------------------------------------------------------

  /**
   * Lag and desired replicas as the worker computes them (src/lag, from a model admin) equal the
   * truth of the model: per partition, the records at or above the committed offset that its
   * offset map does not claim (`lag-wrong`), never fewer than the jobs without an outcome there
   * (`lag-hides-work`); the due part of a tier within what was written at least its delay ago, up
   * to the producers' clock skew (`lag-due`); desired replicas from the true due count (`desired-wrong`).
   */
  private probeLag(): Promise<void> {
    // Whole milliseconds, as `Date.now()` gives the worker and `strand exporter` (virtual time may
    // stand between two: the lag reads "later than now − delay" as at or after the next millisecond).
    const now = Math.floor(this.time.now);
    const truth = new Map<string, { open: number; unfinished: number; dueLo: number; dueHi: number }>();
    const tierDelay = new Map(this.topics.tiers.map((t, i) => [t, this.cfg.worker.tiers[i]!]));
    const delayTopics = (this.topics.delays ?? []).map((b) => b.topic);
    for (const tp of this.group.tps) {
      const log = this.cluster.log(tp);
      const c = this.group.committed.get(tp);
      const from = c ? c.offset : 0;
      const done = c ? mapDone(c.offset, c.metadata, log.length) : new Set<number>();
      const topic = tp.slice(0, tp.lastIndexOf(':'));
      const delay = tierDelay.get(topic);
      const bucket = delayTopics.includes(topic);
      let open = 0;
      let unfinished = 0;
      let dueLo = 0;
      let dueHi = 0;
      for (let o = from; o < log.length; o++) {
        if (done.has(o)) continue;
        open++;
        const e = log[o]!;
        if (!e.marker && !this.covered(tp, o)) unfinished++;
        if (bucket) continue;
        const written = Math.floor(e.writtenAt);
        if (delay === undefined || written <= now - delay - this.maxSkew) dueLo++;
        if (delay === undefined || written <= now - delay + this.maxSkew) dueHi++;
      }
      truth.set(tp, { open, unfinished, dueLo, dueHi });
    }
    return workerLag(
      this.admin,
      this.options.groupId,
      { main: this.topics.main, tiers: this.topics.tiers, delays: delayTopics },
      this.cfg.worker.tiers,
      now,
    ).then(
      ({ rows, desired }) => {
        let lo = 0;
        let hi = 0;
        for (const r of rows) {
          const tp = tpOf(r.topic, r.partition);
          const t = truth.get(tp);
          if (!t) continue;
          lo += t.dueLo;
          hi += t.dueHi;
          if (r.lag !== t.open)
            this.violation(
              'lag-wrong',
              `${tp}: lag ${r.lag}, but ${t.open} records are not done (committed ${r.committed}, end ${r.end}, map ${r.doneAbove}, meta ${JSON.stringify(this.group.committed.get(tp)?.metadata)})`,
            );
          if (r.lag < t.unfinished)
            this.violation('lag-hides-work', `${tp}: lag ${r.lag}, but ${t.unfinished} jobs have no outcome`);
          if (r.due < t.dueLo || r.due > t.dueHi)
            this.violation(
              'lag-due',
              `${tp}: due ${r.due}, truth ${t.dueLo}..${t.dueHi} (clock skew up to ${this.maxSkew} ms)`,
            );
        }
        if (desired < desiredOf(lo) || desired > desiredOf(hi))
          this.violation(
            'desired-wrong',
            `desired replicas ${desired}, truth ${desiredOf(lo)}..${desiredOf(hi)}`,
          );
      },
      (e: unknown) => this.violation('lag-failed', `computeLag threw ${String(e)}`),
    );
  }

  /** Checks after a step; a lag reading (async, on the model admin) is awaited before the next step. */
  private checkStep(): Promise<void> | undefined {
    const probe = this.step % LAG_PROBE_STEPS === 0 ? this.probeLag() : undefined;
    const w = this.cfg.worker;
    for (const inst of this.instances) {
      if (!inst.alive) continue;
      if (!inst.stopping) this.checkReadiness(inst);
      const b = inst.core.buffered;
      if (b.jobs > w.maxBufferedJobs)
        this.violation(
          'buffer-jobs',
          `${inst.id} holds ${b.jobs} jobs (maxBufferedJobs ${w.maxBufferedJobs})`,
        );
      const slack = checkSettings.strictBytes ? 0 : this.maxRecordBytes;
      if (b.bytes > w.maxBufferedBytes + slack && b.jobs > 1)
        this.violation(
          'buffer-bytes',
          `${inst.id} holds ${b.bytes} bytes in ${b.jobs} jobs (maxBufferedBytes ${w.maxBufferedBytes})`,
        );
      if (b.jobs < 0 || b.bytes < 0)
        this.violation('buffer-negative', `${inst.id} buffered ${b.jobs} jobs / ${b.bytes} bytes`);
      if (inst.core.inflight > w.concurrency)
        this.violation(
          'concurrency',
          `${inst.id} runs ${inst.core.inflight} jobs (concurrency ${w.concurrency})`,
        );
      // A handler still running jobTimeoutMs after its abort is stuck: its slot goes back, so at
      // least that many slots are free of such handlers (`stuck-holds-slot`).
      if (w.jobTimeoutMs > 0) {
        let overdue = 0;
        for (const run of inst.running) if (this.time.now - run.start > 2 * w.jobTimeoutMs + 1) overdue++;
        if (overdue > inst.core.stuck)
          this.violation(
            'stuck-holds-slot',
            `${inst.id} has ${overdue} handlers past twice jobTimeoutMs but counts ${inst.core.stuck} stuck`,
          );
      }
    }
    return probe;
  }

  /**
   * At the end (every job ended, everything committed, every instance stopped): no key is parked
   * any more (`parked-left`: the next owner of its partition would park its jobs behind a head
   * that never releases them); parked jobs still in the parking topic (never removed) are counted.
   */
  private checkParkingClean(): void {
    for (const [lane, { head }] of this.keyState)
      if (head !== null) {
        const [partition, key] = lane.split('\0');
        this.violation(
          'parked-left',
          `key ${key} of partition ${partition} is still parked behind ${head} at the end`,
        );
      }
    for (let p = 0; p < this.cfg.partitions; p++) {
      const live = new Set<string>();
      for (const e of this.cluster.log(tpOf(this.topics.parked, p))) {
        const id = e.key?.toString('utf8') ?? '';
        if (!id.startsWith(`${this.options.groupId}\0f:`)) continue;
        if (e.value === null) live.delete(id);
        else live.add(id);
      }
      if (live.size > 0) this.count('parked-jobs-left', live.size);
    }
  }

  /** What keeps the seed from being settled, or undefined when everything ended and is committed. */
  /**
   * What is not settled yet. After every instance stopped (`afterStop`), a tail of release records
   * that need nothing (a key's state no longer waits for them: a duplicate release a stopping member
   * wrote after the partition's last owner left) is left for the next start, not lost.
   * `brief`: whether, not what (the run loop asks after every step of the quiet period): the same
   * checks, answered `UNSETTLED` without building the description.
   */
  private unsettled(afterStop = false, brief = false): string | undefined {
    for (const j of this.jobs) {
      if (!j.succeeded && !j.dlq)
        return brief
          ? UNSETTLED
          : `job rid ${j.rid} (${j.entry.topic}:${j.entry.partition}@${j.entry.offset}, ${j.kind}) neither completed nor dead-lettered`;
    }
    for (const tp of this.group.tps) {
      const log = this.cluster.log(tp);
      const committed = this.group.committed.get(tp)?.offset ?? 0;
      const spare = (o: number) =>
        afterStop && log[o]?.headers[HEADERS.release] !== undefined && this.covered(tp, o);
      let end = log.length;
      while (end > committed && spare(end - 1)) end--;
      if (committed !== end) {
        if (brief) return UNSETTLED;
        let firstOpen = -1;
        for (let o = committed; o < log.length; o++)
          if (!this.covered(tp, o)) {
            firstOpen = o;
            break;
          }
        return `${tp} committed at ${committed}, log end ${log.length}${firstOpen >= 0 ? `, first record without outcome ${firstOpen}` : ''}`;
      }
    }
    // A release's record counts as done once it began (strict order): it is over when its key is.
    for (const [lane, { head }] of this.keyState)
      if (head !== null)
        return brief ? UNSETTLED : `key ${lane.replace('\0', ' ')} still parked behind ${head}`;
    // A job still under way may route on yet (a member out of the group whose run of a job the
    // owner finished asked to retry later, seed 49041): what it writes is part of the end state.
    if (!afterStop)
      for (const inst of this.instances)
        if (inst.alive && this.startedJobs(inst) > 0)
          return brief ? UNSETTLED : `${inst.id} still has jobs under way`;
    return undefined;
  }

  /** Jobs (or releases) started in the core and not ended, with or without a slot (a look inside). */
  private startedJobs(inst: Instance): number {
    const core = inst.core as unknown as { dispatcher?: { started?: number } };
    const started = core.dispatcher?.started;
    if (started === undefined) {
      this.violation(
        'sim-peek',
        'WorkerCore has no `dispatcher.started` any more: update sim.ts startedJobs',
      );
      return 0;
    }
    return started;
  }

  // ---- the run --------------------------------------------------------------------------------

  async run(): Promise<SeedResult> {
    const c = this.cfg;
    const r = this.rng;
    const initial = Math.max(1, Math.round(c.records * (0.3 + r.next() * 0.7)));
    for (let i = 0; i < initial; i++) this.enqueue();
    for (let i = initial; i < c.records; i++) this.time.schedule(() => this.enqueue(), r.int(0, c.chaosMs));
    this.startInstance();
    if (c.members > 1) this.time.schedule(() => this.startInstance(), r.int(0, c.chaosMs >> 1));
    for (let i = 0; i < c.faults; i++)
      this.time.schedule(() => this.fault(), this.faultRng.int(0, c.chaosMs));
    this.time.schedule(() => this.endChaos(), c.chaosMs);
    // Delay buckets found while running (a seventh stream): the core resubscribes, and the
    // subscribe may fail a few times first (issue 25, defect 8).
    const rs = Rng.derive(this.seed, 15);
    if (c.delays && rs.chance(0.5))
      for (let i = rs.int(1, 2); i > 0; i--) {
        const failures = rs.pick([0, 1, 1, 2, 3]);
        this.time.schedule(() => this.resubscribe(failures), rs.int(0, c.chaosMs));
      }
    let steps = 0;
    const limit = EPOCH + c.chaosMs + QUIET_LIMIT_MS;
    let stopping: Promise<unknown> | undefined;
    let stopped = false;
    for (;;) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.violationFound) break;
      const probe = this.checkStep();
      if (probe) await probe;
      if (this.violationFound) break;
      if (this.phase === 'quiet' && this.unsettled(false, true) === undefined) {
        // Everything ended and is committed: stop every instance gracefully.
        this.phase = 'stopping';
        this.trace('sim', 'settled; stopping every instance');
        const running = this.instances.filter((i) => i.alive && !i.stopping);
        stopping = Promise.all(
          running.map(
            (inst) =>
              new Promise<void>((resolve) => {
                this.gracefulStop(inst, resolve);
              }),
          ),
        ).then(() => {
          stopped = true;
        });
        continue;
      }
      if (stopped) {
        const left = this.unsettled(true);
        if (left) this.violation('lost-after-stop', left);
        this.checkFollowUps();
        this.checkParkingClean();
        this.phase = 'done';
        break;
      }
      const timer = this.time.next();
      if (!timer) {
        this.violation('stalled', `nothing left to happen; ${this.unsettled() ?? 'instances did not stop'}`);
        break;
      }
      if (this.time.now > limit) {
        this.violation('not-settled', this.unsettled() ?? 'instances did not stop');
        break;
      }
      if (++steps > MAX_STEPS) {
        this.violation('runaway', `more than ${MAX_STEPS} steps; ${this.unsettled() ?? ''}`);
        break;
      }
      this.step++;
      try {
        timer.fn();
      } catch (e) {
        this.violation(
          'timer-threw',
          `a timer threw: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`,
        );
      }
    }
    void stopping;
    this.stats.steps = steps;
    this.stats.jobs = this.jobs.length;
    return {
      seed: this.seed,
      steps,
      virtualMs: this.time.now - EPOCH,
      violation: this.violationFound,
      stats: this.stats,
    };
  }
}

/** A thrown value's name for traces, whatever was thrown (getters may throw). */
function nameOf(error: unknown): string {
  try {
    if (error instanceof Error) return error.name;
    return error === null
      ? 'null'
      : typeof error === 'object'
        ? 'object'
        : `${typeof error} ${String(error)}`;
  } catch {
    return 'unreadable';
  }
}

/** An object whose every property read throws (a broken proxy thrown by user code). */
function hostileObject(): unknown {
  return new Proxy(
    {},
    {
      get() {
        throw new Error('hostile getter');
      },
      getPrototypeOf() {
        throw new Error('hostile prototype');
      },
    },
  );
}

/** A `RetryLaterError` delay over the whole number line; `finite`: only finite, non-negative, up to that. */
function wideDelay(r: Rng, finite: number | undefined): number {
  const invalid = [-1, -1000, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY];
  const valid =
    finite === undefined
      ? [0, 1, 2 ** 31 - 1, 2 ** 31, 2 ** 31 + 5, 3e9, 1e12, Number.MAX_VALUE, r.int(1, 5000)]
      : [0, 1, r.int(1, finite)];
  return r.chance(0.4) ? r.pick(invalid) : r.pick(valid);
}

/** A RetryLaterError of `delayMs`, or what its constructor throws for a delay it refuses (a RangeError). */
function retryLater(delayMs: number): unknown {
  try {
    return new RetryLaterError({ delayMs });
  } catch (e) {
    return e;
  }
}

export function runSeed(seed: number, opts: { verbose?: boolean } = {}): Promise<SeedResult> {
  return new Simulation(seed, opts.verbose === true).run();
}

export function formatViolation(v: Violation): string {
  return [
    `seed ${v.seed}: ${v.kind} at ${v.at} ms: ${v.text}`,
    `  replay: node --import tsx test/sim/run.ts --seed ${v.seed}`,
    '  last steps:',
    ...v.trace.map((line) => `    ${line}`),
  ].join('\n');
}

/** The tenant of a key in the simulation (the bulk tenant t0 owns the first keys). */
export function tenantOfKey(t: TenantsConfig, key: string | null): string {
  if (key === null) return 'none';
  const i = Number(key.slice(1));
  return i < t.bulkKeys ? 't0' : `t${i % t.count}`;
}

function tenantOptions(t: TenantsConfig): object {
  return {
    tenant: (job: Job<unknown>) => tenantOfKey(t, job.key),
    limits: {
      perKey: t.keyRate ? { rate: t.keyRate } : undefined,
      perTenant: {
        weights: t.weights,
        ...(t.tenantRate ? { rate: t.tenantRate } : {}),
        ...(t.tenantConcurrency ? { concurrency: t.tenantConcurrency } : {}),
      },
      fair: t.fair,
      maxDeferred: t.maxDeferred,
    },
  };
}
