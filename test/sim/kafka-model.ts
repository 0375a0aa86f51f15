/**
 * An in-memory model of what the worker core sees of Kafka: partitioned logs (job topic, retry
 * tiers, DLQ), a consumer group with generations, rebalances that wait for each member's
 * `beforeRejoin` (up to the rebalance timeout, then expel it), fetch positions that reset to the
 * committed offset on every join, and a coordinator that refuses commits of an old generation
 * (ILLEGAL_GENERATION) and metadata over 4,096 bytes (OFFSET_METADATA_TOO_LARGE).
 */

import { stickyShares } from '../../src/kafka/assigner.js';
import { holdRejoin } from '../../src/kafka/rejoin-hold.js';
import type {
  CommittedOffset,
  ConsumerPort,
  FetchedBatch,
  FetchedRecord,
  GroupHooks,
  OffsetCommit,
  RecordHeaders,
} from '../../src/ports.js';
import type { ChildClock, VirtualTime } from './clock.js';
import type { Rng } from './random.js';

/** Model-only header: where a record sits (`topic:partition:offset`). A routed record carries its source's. */
export const SIM_AT = 'sim-at';

export const tpOf = (topic: string, partition: number) => `${topic}:${partition}`;

export interface LogEntry {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  readonly headers: RecordHeaders;
  /** A transaction marker: takes an offset, is never handed over. */
  readonly marker: boolean;
  /** The job (job-topic record) this record belongs to; -1 for markers. */
  readonly rid: number;
  /** `tp:offset` of the record it was routed from (tier and DLQ records). */
  readonly src: string | undefined;
  readonly writtenAt: number;
  /** The record's timestamp (CreateTime): its producer's clock, which may be skewed. */
  readonly timestamp: number;
}

/** Topics and their partition logs. */
export class Cluster {
  private readonly logs = new Map<string, LogEntry[]>();
  readonly partitionCounts = new Map<string, number>();
  private nullKeyRound = 0;
  /** Called after every append (the group wakes fetchers). */
  onAppend: ((entry: LogEntry) => void) | undefined;

  constructor(private readonly time: VirtualTime) {}

  addTopic(name: string, partitions: number): void {
    this.partitionCounts.set(name, partitions);
    for (let p = 0; p < partitions; p++) this.logs.set(tpOf(name, p), []);
  }

  log(tp: string): LogEntry[] {
    const log = this.logs.get(tp);
    if (!log) throw new Error(`no partition ${tp}`);
    return log;
  }

  partitionsOf(topic: string): number {
    return this.partitionCounts.get(topic) ?? 0;
  }

  /** Java-client-like: the same key always lands on the same partition; null keys go round robin. */
  partitionFor(topic: string, key: Buffer | string | null): number {
    const n = this.partitionsOf(topic);
    if (n === 0) throw new Error(`unknown topic ${topic}`);
    if (key === null) return this.nullKeyRound++ % n;
    const bytes = typeof key === 'string' ? Buffer.from(key) : key;
    let h = 0x811c9dc5;
    for (const b of bytes) h = Math.imul(h ^ b, 0x01000193);
    return (h >>> 0) % n;
  }

  append(
    topic: string,
    partition: number,
    r: {
      key: Buffer | null;
      value: Buffer | null;
      headers: RecordHeaders;
      marker?: boolean;
      rid: number;
      src?: string;
      /** The producer's clock skew (ms) against the model's time. */
      skew?: number;
    },
  ): LogEntry {
    const log = this.log(tpOf(topic, partition));
    const offset = log.length;
    const entry: LogEntry = {
      topic,
      partition,
      offset,
      key: r.key,
      value: r.value,
      headers: { ...r.headers, [SIM_AT]: `${topic}:${partition}:${offset}` },
      marker: r.marker === true,
      rid: r.rid,
      src: r.src,
      writtenAt: this.time.now,
      // Whole milliseconds, as a producer's Date.now() stamps it.
      timestamp: Math.floor(this.time.now) + (r.skew ?? 0),
    };
    log.push(entry);
    this.onAppend?.(entry);
    return entry;
  }
}

/** Timing and fault knobs of the model (drawn per seed). */
export interface ModelOptions {
  partitionsConsumedConcurrently: number;
  maxBatch: number;
  fetchDelayMax: number;
  joinDelayMax: number;
  /** Slack of the port's rejoin deadline for noticing a rebalance (the real port's fetch wait + 1 s). */
  noticeDelayMax: number;
  /**
   * How often a member heartbeats: from its fetch loop when no batch is in flight, after a batch
   * (once the interval passed), when the intake calls `batch.heartbeat()`, and while its port holds
   * the rejoin (src/kafka/rejoin-hold.ts). A rebalance is noticed only through a heartbeat, and
   * acted on (REBALANCING, `beforeRejoin`) once every batch in flight returned, as kafkajs does.
   */
  heartbeatIntervalMs: number;
  commitLatencyMax: number;
  committedLatencyMax: number;
  commitFailRate: number;
  /** A failed commit was applied anyway (the answer was lost). */
  ambiguousCommitRate: number;
  /** How long the coordinator waits for members to rejoin before expelling them. */
  groupRebalanceTimeoutMs: number;
  /**
   * The coordinator expels a member it heard nothing from (heartbeat, JoinGroup, SyncGroup) for
   * this long, whatever the member is doing; a member whose JoinGroup is pending is kept.
   */
  sessionTimeoutMs: number;
  /** Batches of a member turn inactive as soon as the rebalance starts (else at the join). */
  staleOnRevoke: boolean;
  /** A partition paused by a batch stays paused across a rejoin (kafkajs keeps its pause state). */
  pauseSurvivesRejoin: boolean;
  consumerRestartDelayMax: number;
  metadataMaxBytes: number;
  /**
   * The coordinator's assignment: partition i of every topic to one member, members in id order
   * (src/kafka/assigner.ts, which workers prefer); else round robin over the topic-partitions in
   * order, members in join order (kafkajs' round robin, for groups with older members).
   */
  coPartitioned?: boolean;
}

/** What the model reports to the checker. */
export interface ModelObserver {
  trace(who: string, text: string): void;
  violation(kind: string, text: string): void;
  /** The core asked to commit (before the coordinator sees it). */
  commitSent(member: MemberPort, offsets: readonly OffsetCommit[]): void;
  /** The coordinator stored `commit` (`prev`: what it had). */
  commitApplied(
    member: MemberPort,
    commit: OffsetCommit,
    prev: { offset: number; metadata: string } | undefined,
  ): void;
  /**
   * The member was told its partitions (`tps`) of generation `generation`. `continuous`: it was a
   * member of the generation before (not expelled, not new): its ownership of a kept partition
   * did not break.
   */
  assigned(member: MemberPort, generation: number, tps: readonly string[], continuous: boolean): void;
  /** The member lost every partition (consumer crash, told to the core). */
  lostAll(member: MemberPort): void;
  /** The coordinator expelled the member: its session expired, or it missed the rebalance timeout. */
  expelled?(member: MemberPort, why: 'session' | 'rebalance-timeout'): void;
  /** `beforeRejoin()` was called on the member's core, and when it settled. */
  drainStarted(member: MemberPort): void;
  drainSettled(member: MemberPort): void;
}

export class KafkaError extends Error {
  constructor(
    readonly type: string,
    message: string,
  ) {
    super(message);
    this.name = 'KafkaJSProtocolError';
  }
}

const rebalanceError = () => new KafkaError('REBALANCE_IN_PROGRESS', 'The group is rebalancing');

/** Fault switches the scenario turns on and off. */
export interface ModelFaults {
  commitOutage: boolean;
}

/** A consumer group over the job topic and its tiers. */
export class Group {
  generation = 0;
  readonly members: MemberPort[] = [];
  preparing = false;
  readonly committed = new Map<string, { offset: number; metadata: string }>();
  private deadline: ReturnType<ChildClock['setTimeout']> | undefined;
  private completeTimer: ReturnType<ChildClock['setTimeout']> | undefined;
  private readonly allMembers: MemberPort[] = [];
  /** Each member's partition indexes of the last generation (what it sends with its JoinGroup). */
  private ownedIndexes = new Map<string, number[]>();

  constructor(
    readonly time: VirtualTime,
    readonly cluster: Cluster,
    /** Subscribed topic-partitions in assignment order. */
    readonly tps: readonly string[],
    public opts: ModelOptions,
    readonly rng: Rng,
    readonly observer: ModelObserver,
    readonly faults: ModelFaults,
  ) {
    cluster.onAppend = (entry) => {
      const tp = tpOf(entry.topic, entry.partition);
      for (const m of this.members) if (m.owns(tp)) m.scheduleFetch();
    };
  }

  /**
   * The quiet period: a coordinator that expels at a rebalance timeout shorter than a heartbeat
   * (a fault: the real port asks for at least 60 s) waits from now on at least a heartbeat, the
   * notice delay and a JoinGroup round trip, so a member that heartbeats can rejoin in time. Kept,
   * two members would expel each other at every rejoin for good (sim seeds 456529, 215119).
   */
  calm(): void {
    const o = this.opts;
    const floor = o.heartbeatIntervalMs + o.noticeDelayMax + o.joinDelayMax;
    if (o.groupRebalanceTimeoutMs < floor) this.opts = { ...o, groupRebalanceTimeoutMs: floor };
  }

  register(member: MemberPort): void {
    this.allMembers.push(member);
  }

  join(member: MemberPort): void {
    if (!this.members.includes(member)) this.members.push(member);
    member.phase = 'joining';
    member.renewSession();
    this.observer.trace(member.id, `joins the group (gen ${this.generation})`);
    this.trigger(`${member.id} joins`);
  }

  leave(member: MemberPort, why: string): void {
    const i = this.members.indexOf(member);
    if (i < 0) return;
    this.members.splice(i, 1);
    this.observer.trace(member.id, `leaves the group: ${why}`);
    if (this.members.length > 0) this.trigger(`${member.id} left`);
    else if (this.preparing) this.tryComplete();
  }

  /** Starts a rebalance (or joins the one under way). */
  trigger(reason: string): void {
    if (!this.preparing) {
      this.preparing = true;
      this.observer.trace('group', `rebalance of gen ${this.generation}: ${reason}`);
      this.deadline = this.time.schedule(
        () => this.onDeadline(),
        this.opts.groupRebalanceTimeoutMs,
        undefined,
        'group',
      );
      // Members notice it at their next heartbeat (MemberPort.heartbeatNow).
    }
    // The JoinGroup round trip: completion is never synchronous with the trigger.
    if (!this.completeTimer)
      this.completeTimer = this.time.schedule(
        () => {
          this.completeTimer = undefined;
          this.tryComplete();
        },
        this.rng.int(1, this.opts.joinDelayMax),
        undefined,
        'group',
      );
  }

  tryComplete(): void {
    if (!this.preparing || this.completeTimer) return;
    if (this.members.every((m) => m.readyToJoin())) this.complete();
  }

  private onDeadline(): void {
    this.deadline = undefined;
    if (!this.preparing) return;
    for (const m of [...this.members]) {
      if (m.readyToJoin()) continue;
      this.members.splice(this.members.indexOf(m), 1);
      this.observer.expelled?.(m, 'rebalance-timeout');
      m.expel();
    }
    this.complete();
  }

  /** The member's session ran out: it is out of the group (it learns so at its next heartbeat). */
  expire(member: MemberPort): void {
    const i = this.members.indexOf(member);
    if (i < 0) return;
    this.members.splice(i, 1);
    this.observer.trace(
      member.id,
      `expelled: no heartbeat for ${this.opts.sessionTimeoutMs} ms (session timeout)`,
    );
    this.observer.expelled?.(member, 'session');
    if (this.members.length > 0) this.trigger(`${member.id} session expired`);
    else if (this.preparing) this.tryComplete();
  }

  private complete(): void {
    this.preparing = false;
    if (this.deadline) (this.deadline as { cancelled: boolean }).cancelled = true;
    this.deadline = undefined;
    this.generation++;
    const n = this.members.length;
    const shares: string[][] = this.members.map(() => []);
    if (this.opts.coPartitioned) {
      // The real assigner: sticky shares of the partition indexes, each member keeping what it owns.
      const index = (tp: string) => Number(tp.slice(tp.lastIndexOf(':') + 1));
      const owner = stickyShares(
        [...new Set(this.tps.map(index))],
        this.members.map((m) => ({ id: m.id, owned: this.ownedIndexes.get(m.id) ?? [] })),
      );
      for (const tp of this.tps) {
        if (n === 0) break;
        shares[this.members.findIndex((m) => m.id === owner.get(index(tp)))]!.push(tp);
      }
      this.ownedIndexes = new Map(
        this.members.map((m, i) => [m.id, [...new Set(shares[i]!.map(index))]] as [string, number[]]),
      );
    } else
      this.tps.forEach((tp, i) => {
        if (n > 0) shares[i % n]!.push(tp);
      });
    this.observer.trace(
      'group',
      `gen ${this.generation}: ${this.members.map((m, i) => `${m.id}=[${shares[i]!.join(' ')}]`).join(' ') || 'no members'}`,
    );
    const members = [...this.members];
    members.forEach((m, i) => {
      m.onAssigned(this.generation, shares[i]!);
    });
  }

  /** The coordinator's view: does a commit of `member` sent with `generation` count? */
  acceptsCommitFrom(member: MemberPort, generation: number): boolean {
    return (
      this.members.includes(member) &&
      member.gen === this.generation &&
      generation === this.generation &&
      (member.phase === 'stable' || member.phase === 'revoking')
    );
  }
}

type Phase = 'idle' | 'joining' | 'stable' | 'revoking' | 'out' | 'leaving' | 'stopped';

interface BatchState {
  readonly tp: string;
  readonly gen: number;
  readonly session: number;
}

/**
 * One worker instance's group consumer. `alive` false: the process died (nothing it started
 * answers any more).
 */
export class MemberPort implements ConsumerPort {
  /** As the kafkajs port: the coordinator's rebalance timeout less a heartbeat and the notice slack. */
  get rejoinDeadlineMs(): number {
    return this.opts.groupRebalanceTimeoutMs - this.opts.heartbeatIntervalMs - this.opts.noticeDelayMax;
  }

  phase: Phase = 'idle';
  alive = true;
  gen = -1;
  /** Bumped at every (re)start of the consumer: pause state and batches of an older one are gone. */
  private session = 0;
  expelled = false;
  /** Crashed and waits for the core to call restart(). */
  awaitingRestart = false;
  revokeSettled = true;
  private revokeToken = 0;
  private hooks: GroupHooks | undefined;
  private onBatch: ((batch: FetchedBatch) => Promise<void>) | undefined;
  /** Partitions as last told to the core. */
  told: readonly string[] = [];
  private toldSet = new Set<string>();
  private readonly positions = new Map<string, number>();
  private readonly pausedTps = new Set<string>();
  private readonly pausedTopics = new Set<string>();
  private readonly inflight = new Map<string, BatchState>();
  private fetchTimer: ReturnType<ChildClock['setTimeout']> | undefined;
  private stopWaiter: (() => void) | undefined;
  private rotate = 0;
  /** The coordinator last heard from this member (its session runs from here). */
  private lastBeat = 0;
  /** The member last sent a heartbeat (kafkajs sends one only once the interval passed). */
  private lastSent = Number.NEGATIVE_INFINITY;
  /** A heartbeat was answered REBALANCE_IN_PROGRESS or UNKNOWN_MEMBER_ID: rejoin once no batch is in flight. */
  private noticed = false;
  /** A batch was handed over (the kafkajs port heartbeats a held rejoin through the last one's heartbeat). */
  private hadBatch = false;
  private heartbeatTimer: ReturnType<ChildClock['setTimeout']> | undefined;
  private sessionTimer: ReturnType<VirtualTime['schedule']> | undefined;
  /** Calls of the port by the core, for unit tests and traces. */
  readonly stats = { batches: 0, commits: 0, commitsRejected: 0, restarts: 0 };

  constructor(
    readonly id: string,
    readonly group: Group,
    readonly clock: ChildClock,
    private readonly rng: Rng,
  ) {
    group.register(this);
  }

  private get opts(): ModelOptions {
    return this.group.opts;
  }

  private get observer(): ModelObserver {
    return this.group.observer;
  }

  owns(tp: string): boolean {
    return this.toldSet.has(tp);
  }

  // ---- ConsumerPort --------------------------------------------------------------------------

  async start(hooks: GroupHooks, onBatch: (batch: FetchedBatch) => Promise<void>): Promise<void> {
    if (!this.alive) throw new Error('dead process');
    this.hooks = hooks;
    this.onBatch = onBatch;
    this.session++;
    this.group.join(this);
  }

  async restart(): Promise<void> {
    if (!this.alive) throw new Error('dead process');
    this.stats.restarts++;
    if (!this.awaitingRestart || this.phase !== 'out') {
      this.observer.trace(this.id, 'restart() while not crashed: ignored');
      return;
    }
    this.awaitingRestart = false;
    this.session++;
    this.observer.trace(this.id, 'restart() by the core');
    this.group.join(this);
  }

  commit(offsets: readonly OffsetCommit[]): Promise<void> {
    if (!this.alive) return Promise.reject(new Error('dead process'));
    this.stats.commits++;
    this.observer.commitSent(this, offsets);
    const gen = this.gen;
    const fail = this.group.faults.commitOutage || this.rng.chance(this.opts.commitFailRate);
    const ambiguous = fail && this.rng.chance(this.opts.ambiguousCommitRate);
    const list = offsets.map((o) => ({ ...o }));
    return new Promise((resolve, reject) => {
      this.clock.setTimeout(
        () => {
          const valid = this.group.acceptsCommitFrom(this, gen);
          const tooLarge = list.find((o) => Buffer.byteLength(o.metadata) > this.opts.metadataMaxBytes);
          const text = list.map((o) => `${o.topic}:${o.partition}@${o.offset}`).join(' ');
          if (fail) {
            if (valid && !tooLarge && ambiguous) this.apply(list);
            this.stats.commitsRejected++;
            this.observer.trace(
              this.id,
              `commit ${text} failed (timeout${ambiguous && valid ? ', applied' : ''})`,
            );
            return reject(new KafkaError('REQUEST_TIMED_OUT', 'commit timed out'));
          }
          if (!valid) {
            this.stats.commitsRejected++;
            this.observer.trace(this.id, `commit ${text} rejected: ILLEGAL_GENERATION (sent in gen ${gen})`);
            return reject(new KafkaError('ILLEGAL_GENERATION', 'Specified group generation id is not valid'));
          }
          if (tooLarge) {
            this.stats.commitsRejected++;
            this.observer.trace(this.id, `commit ${text} rejected: OFFSET_METADATA_TOO_LARGE`);
            return reject(
              new KafkaError(
                'OFFSET_METADATA_TOO_LARGE',
                'The metadata field of the offset request was too large',
              ),
            );
          }
          this.apply(list);
          this.observer.trace(this.id, `commit ${text} ok (gen ${gen})`);
          resolve();
        },
        this.rng.int(0, this.opts.commitLatencyMax),
      );
    });
  }

  private apply(list: readonly OffsetCommit[]): void {
    for (const o of list) {
      const tp = tpOf(o.topic, o.partition);
      const prev = this.group.committed.get(tp);
      this.observer.commitApplied(this, o, prev);
      this.group.committed.set(tp, { offset: o.offset, metadata: o.metadata });
    }
  }

  committed(topics: readonly string[]): Promise<CommittedOffset[]> {
    if (!this.alive) return Promise.reject(new Error('dead process'));
    return new Promise((resolve) => {
      this.clock.setTimeout(
        () => {
          const out: CommittedOffset[] = [];
          for (const topic of topics) {
            for (let p = 0; p < this.group.cluster.partitionsOf(topic); p++) {
              const c = this.group.committed.get(tpOf(topic, p));
              out.push({ topic, partition: p, offset: c ? c.offset : -1, metadata: c ? c.metadata : null });
            }
          }
          resolve(out);
        },
        this.rng.int(0, this.opts.committedLatencyMax),
      );
    });
  }

  /** As kafkajs: pausing or resuming a whole topic also clears the pauses of its partitions. */
  pause(topics: readonly string[]): void {
    for (const t of topics) {
      this.pausedTopics.add(t);
      this.clearPartitionPauses(t);
    }
  }

  resume(topics: readonly string[]): void {
    for (const t of topics) {
      this.pausedTopics.delete(t);
      this.clearPartitionPauses(t);
    }
    this.scheduleFetch();
  }

  resumePartitions(partitions: readonly { topic: string; partition: number }[]): void {
    for (const { topic, partition } of partitions) {
      const tp = `${topic}:${partition}`;
      if (this.pausedTps.delete(tp)) this.observer.trace(this.id, `resume ${tp} (new ownership)`);
    }
    this.scheduleFetch();
  }

  private clearPartitionPauses(topic: string): void {
    for (const tp of [...this.pausedTps])
      if (tp.slice(0, tp.lastIndexOf(':')) === topic) this.pausedTps.delete(tp);
  }

  /** Subscribes failing this many more times (a `resubscribe` fault of the scenario). */
  resubscribeFailures = 0;

  /**
   * As the kafkajs port: stop (leaves the group, waits for batches in flight), subscribe, run
   * (joins again). A failed subscribe leaves the consumer stopped, out of the group.
   */
  async resubscribe(_topics: readonly string[]): Promise<void> {
    if (!this.alive) throw new Error('dead process');
    this.observer.trace(this.id, 'resubscribe: stop, subscribe, run');
    await this.stop();
    if (this.resubscribeFailures > 0) {
      this.resubscribeFailures--;
      this.observer.trace(this.id, 'resubscribe: subscribe failed');
      throw new KafkaError('UNKNOWN_TOPIC_OR_PARTITION', 'simulated subscribe failure');
    }
    this.session++;
    this.group.join(this);
  }

  stop(): Promise<void> {
    if (!this.alive) return Promise.reject(new Error('dead process'));
    if (this.phase === 'stopped' || this.phase === 'idle') {
      this.phase = 'stopped';
      return Promise.resolve();
    }
    const wasMember = this.phase !== 'out';
    this.phase = 'leaving';
    this.observer.trace(this.id, 'consumer stopping');
    return new Promise((resolve) => {
      const finish = () => {
        this.stopWaiter = undefined;
        if (this.phase !== 'leaving') return;
        this.phase = 'stopped';
        if (wasMember) this.group.leave(this, 'stop');
        this.told = [];
        this.toldSet = new Set();
        this.observer.lostAll(this);
        resolve();
      };
      if (this.inflight.size === 0) return finish();
      this.stopWaiter = finish;
      // kafkajs waits for running batches; a batch that never returns does not keep us forever.
      this.clock.setTimeout(() => this.stopWaiter?.(), this.opts.groupRebalanceTimeoutMs);
    });
  }

  // ---- group protocol ------------------------------------------------------------------------

  /** The coordinator heard from the member now (heartbeat, JoinGroup, SyncGroup). */
  renewSession(): void {
    this.lastBeat = this.group.time.now;
    if (this.sessionTimer) return;
    const check = () => {
      this.sessionTimer = undefined;
      if (!this.group.members.includes(this)) return;
      // A member whose JoinGroup the coordinator holds is kept.
      if (this.phase === 'joining' || this.readyToJoin()) this.lastBeat = this.group.time.now;
      const left = this.lastBeat + this.opts.sessionTimeoutMs - this.group.time.now;
      if (left <= 0) return this.group.expire(this);
      this.sessionTimer = this.group.time.schedule(check, left, undefined, 'group');
    };
    this.sessionTimer = this.group.time.schedule(check, this.opts.sessionTimeoutMs, undefined, 'group');
  }

  /** A heartbeat request: renews the session of a member; the answer says whether a rebalance is on. */
  private beat(): 'ok' | 'rebalancing' | 'unknown' {
    this.lastSent = this.clock.now();
    if (!this.group.members.includes(this)) return 'unknown';
    this.renewSession();
    return this.group.preparing || this.gen !== this.group.generation ? 'rebalancing' : 'ok';
  }

  private heartbeatNow(): void {
    const answer = this.beat();
    if (answer !== 'ok') {
      if (!this.noticed)
        this.observer.trace(
          this.id,
          `heartbeat: ${answer === 'unknown' ? 'UNKNOWN_MEMBER_ID' : 'REBALANCE_IN_PROGRESS'}`,
        );
      this.noticed = true;
    }
  }

  /** kafkajs' fetch loop heartbeats when no batch of its round is in flight. */
  private armHeartbeat(): void {
    if (this.heartbeatTimer || !this.alive) return;
    this.heartbeatTimer = this.clock.setTimeout(() => {
      this.heartbeatTimer = undefined;
      if (!this.alive || this.phase !== 'stable') return;
      if (this.inflight.size === 0) this.heartbeatNow();
      this.maybeRevoke();
      this.armHeartbeat();
    }, this.opts.heartbeatIntervalMs);
  }

  /** A noticed rebalance (or expulsion) is acted on once every batch in flight returned: REBALANCING. */
  private maybeRevoke(): void {
    if (!this.noticed || !this.alive || this.phase !== 'stable' || this.inflight.size > 0) return;
    this.noticed = false;
    this.beginRevoke();
  }

  readyToJoin(): boolean {
    if (!this.alive) return false;
    if (this.phase === 'joining') return true;
    return this.phase === 'revoking' && this.revokeSettled && this.inflight.size === 0;
  }

  /**
   * The rebalance reached us (REBALANCING): the port holds the JoinGroup until beforeRejoin settles,
   * heartbeating meanwhile with the real port's code (src/kafka/rejoin-hold.ts).
   */
  beginRevoke(): void {
    this.phase = 'revoking';
    this.revokeSettled = false;
    const token = ++this.revokeToken;
    this.observer.trace(this.id, 'beforeRejoin()');
    this.observer.drainStarted(this);
    let how = 'resolved';
    const gate = this.hooks!.beforeRejoin().catch(() => {
      how = 'rejected';
    });
    const sleep = (ms: number) => new Promise<void>((resolve) => this.clock.setTimeout(resolve, ms));
    void holdRejoin(gate, this.opts.heartbeatIntervalMs, () => this.holdBeat(), sleep).then(() => {
      if (!this.alive || token !== this.revokeToken) return;
      this.revokeSettled = true;
      this.observer.trace(this.id, `beforeRejoin ${how}`);
      this.observer.drainSettled(this);
      // Expelled meanwhile (session, or a plant that stops the heartbeats): it joins anew.
      if (this.phase === 'revoking' && !this.group.members.includes(this)) {
        this.phase = 'out';
        this.expelled = true;
      }
      this.afterProgress();
    });
  }

  /** The port's heartbeat while it holds the rejoin: the last batch's (none before the first batch). */
  private holdBeat(): Promise<void> | undefined {
    if (!this.alive || !this.hadBatch) return undefined;
    if (this.clock.now() - this.lastSent < this.opts.heartbeatIntervalMs) return Promise.resolve();
    return this.beat() === 'unknown'
      ? Promise.reject(new KafkaError('UNKNOWN_MEMBER_ID', 'unknown member'))
      : Promise.reject(rebalanceError());
  }

  /** Missed the rebalance deadline: out of the group; rejoins once its drain and batches end. */
  expel(): void {
    if (this.phase === 'leaving') return;
    // It had not noticed the rebalance: it learns it is out at its next heartbeat (UNKNOWN_MEMBER_ID).
    if (this.phase === 'stable') {
      this.observer.trace(this.id, 'expelled before it noticed the rebalance');
      return;
    }
    this.phase = 'out';
    this.expelled = true;
    this.observer.trace(this.id, 'expelled: did not rejoin within the rebalance timeout');
  }

  onAssigned(generation: number, tps: string[]): void {
    if (!this.alive || this.phase === 'leaving') return;
    const continuous = this.gen === generation - 1;
    this.gen = generation;
    this.phase = 'stable';
    this.expelled = false;
    this.revokeToken++;
    this.revokeSettled = true;
    this.noticed = false;
    this.renewSession();
    this.armHeartbeat();
    this.told = tps;
    this.toldSet = new Set(tps);
    // A join starts fetching from the committed offsets, also for partitions this member kept.
    this.positions.clear();
    for (const tp of tps) this.positions.set(tp, Math.max(0, this.group.committed.get(tp)?.offset ?? 0));
    if (!this.opts.pauseSurvivesRejoin) this.pausedTps.clear();
    this.observer.assigned(this, generation, tps, continuous);
    const record: Record<string, number[]> = {};
    for (const tp of tps) {
      const i = tp.lastIndexOf(':');
      const topic = tp.slice(0, i);
      const list = record[topic] ?? [];
      list.push(Number(tp.slice(i + 1)));
      record[topic] = list;
    }
    this.hooks!.assigned(record, continuous);
    this.scheduleFetch();
  }

  /** The consumer crashed and left the group (kafkajs CRASH event). */
  crash(restarting: boolean): void {
    if (!this.alive || (this.phase !== 'stable' && this.phase !== 'revoking' && this.phase !== 'joining'))
      return;
    this.phase = 'out';
    this.session++;
    this.revokeToken++;
    this.revokeSettled = true;
    this.pausedTps.clear();
    this.group.leave(this, 'consumer crash');
    this.told = [];
    this.toldSet = new Set();
    this.observer.lostAll(this);
    this.observer.trace(this.id, `consumer crash (restarting: ${restarting})`);
    this.awaitingRestart = !restarting;
    this.hooks!.crashed(new KafkaError('UNKNOWN', 'simulated consumer crash'), restarting);
    if (restarting) {
      this.clock.setTimeout(
        () => {
          if (this.phase === 'out' && !this.awaitingRestart) {
            this.session++;
            this.group.join(this);
          }
        },
        this.rng.int(50, this.opts.consumerRestartDelayMax),
      );
    }
  }

  /** The process died: nothing answers any more; the coordinator notices after the session timeout. */
  kill(): void {
    this.alive = false;
    if (this.fetchTimer) this.clock.clearTimeout(this.fetchTimer);
    this.group.time.schedule(
      () => this.group.leave(this, 'session timeout'),
      this.opts.sessionTimeoutMs,
      undefined,
      'group',
    );
  }

  /** A batch ended, or a drain settled: the group may complete, an expelled member may rejoin. */
  private afterProgress(): void {
    if (!this.alive) return;
    if (this.phase === 'leaving' && this.inflight.size === 0) this.stopWaiter?.();
    if (this.expelled && this.phase === 'out' && this.revokeSettled && this.inflight.size === 0) {
      this.expelled = false;
      this.session++;
      this.group.join(this);
      return;
    }
    this.group.tryComplete();
  }

  // ---- fetching ------------------------------------------------------------------------------

  scheduleFetch(): void {
    if (this.fetchTimer || !this.alive || this.phase !== 'stable') return;
    this.fetchTimer = this.clock.setTimeout(
      () => {
        this.fetchTimer = undefined;
        this.fetch();
      },
      this.rng.int(1, Math.max(1, this.opts.fetchDelayMax)),
    );
  }

  private fetch(): void {
    // A noticed rebalance: kafkajs fetches nothing more (the batch that threw the heartbeat's error
    // ends its fetcher's loop, the others are stopped, the runner rejoins). Fetching on, two
    // partitions' batches would overlap for good and the member would never act on it (seed 303061).
    if (!this.alive || this.phase !== 'stable' || this.noticed) return;
    const tps = this.told;
    const n = tps.length;
    if (n === 0) return;
    // Start at a rotating partition, as kafkajs spreads fetches over its assignment.
    const start = this.rotate++ % n;
    for (let k = 0; k < n; k++) {
      if (this.inflight.size >= this.opts.partitionsConsumedConcurrently) return;
      const tp = tps[(start + k) % n]!;
      if (this.inflight.has(tp) || this.pausedTps.has(tp)) continue;
      const topic = tp.slice(0, tp.lastIndexOf(':'));
      if (this.pausedTopics.has(topic)) continue;
      const log = this.group.cluster.log(tp);
      const pos = this.positions.get(tp) ?? 0;
      if (pos >= log.length) continue;
      const entries = log.slice(pos, Math.min(log.length, pos + this.rng.int(1, this.opts.maxBatch)));
      this.deliver(tp, topic, entries);
    }
  }

  private deliver(tp: string, topic: string, entries: LogEntry[]): void {
    const partition = entries[0]!.partition;
    const lastOffset = entries[entries.length - 1]!.offset;
    const records: FetchedRecord[] = [];
    for (const e of entries)
      if (!e.marker)
        records.push({ offset: String(e.offset), key: e.key, value: e.value, headers: e.headers });
    this.stats.batches++;
    if (records.length === 0) {
      // Only markers: kafkajs moves past them itself and the port reports how far (an empty batch).
      this.positions.set(tp, lastOffset + 1);
      this.observer.trace(this.id, `fetch ${tp} [${entries[0]!.offset}..${lastOffset}] markers only`);
      const batch: FetchedBatch = {
        topic,
        partition,
        records: [],
        lastOffset: String(lastOffset),
        resolveOffset: () => undefined,
        heartbeat: async () => undefined,
        isActive: () => true,
        pause: () => () => undefined,
      };
      this.onBatch!(batch).catch((e: unknown) =>
        this.observer.trace(this.id, `empty batch rejected: ${String(e)}`),
      );
      this.scheduleFetch();
      return;
    }
    const state: BatchState = { tp, gen: this.gen, session: this.session };
    const active = () =>
      this.alive &&
      state.session === this.session &&
      state.gen === this.gen &&
      (this.phase === 'stable' || (this.phase === 'revoking' && !this.opts.staleOnRevoke));
    this.observer.trace(this.id, `fetch ${tp} [${entries[0]!.offset}..${lastOffset}] gen ${state.gen}`);
    const batch: FetchedBatch = {
      topic,
      partition,
      records,
      lastOffset: String(lastOffset),
      resolveOffset: (offset) => {
        if (!active()) return;
        const next = Number(offset) + 1;
        if (next > (this.positions.get(tp) ?? 0)) this.positions.set(tp, next);
      },
      heartbeat: () => {
        if (!this.alive) return new Promise<void>(() => undefined);
        if (state.session !== this.session || (this.phase !== 'stable' && this.phase !== 'joining'))
          return Promise.reject(rebalanceError());
        if (this.phase === 'stable' && this.clock.now() - this.lastSent >= this.opts.heartbeatIntervalMs)
          this.heartbeatNow();
        return this.noticed ? Promise.reject(rebalanceError()) : Promise.resolve();
      },
      isActive: active,
      pause: () => {
        this.observer.trace(this.id, `pause ${tp}`);
        if (state.session === this.session) {
          this.pausedTps.add(tp);
          // kafkajs: pausing one partition ends a whole-topic pause of its topic.
          this.pausedTopics.delete(topic);
        }
        const session = this.session;
        return () => {
          if (session !== this.session || !this.pausedTps.delete(tp)) return;
          this.observer.trace(this.id, `resume ${tp}`);
          this.scheduleFetch();
        };
      },
    };
    this.inflight.set(tp, state);
    this.hadBatch = true;
    const settle = (error?: unknown) => {
      if (!this.alive) return;
      if (this.inflight.get(tp) === state) this.inflight.delete(tp);
      // kafkajs heartbeats after a batch once the interval passed; a noticed rebalance waits for
      // every batch in flight.
      if (this.phase === 'stable' && this.clock.now() - this.lastSent >= this.opts.heartbeatIntervalMs)
        this.heartbeatNow();
      this.maybeRevoke();
      if (error !== undefined && (error as { type?: string }).type !== 'REBALANCE_IN_PROGRESS') {
        this.observer.violation('intake-error', `the intake rejected a batch of ${tp} with ${String(error)}`);
      }
      this.scheduleFetch();
      this.afterProgress();
    };
    this.onBatch!(batch).then(
      () => settle(),
      (e: unknown) => settle(e ?? new Error('nullish rejection')),
    );
  }
}
