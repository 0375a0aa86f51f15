import { hostname } from 'node:os';
import {
  type DeadJob,
  type ReplayResult,
  ReplayStoppedError,
  replayDeadJobs,
  toDeadJob,
} from '../failure/dlq.js';
import { type PickResult, replayDeadJob, wasReplayed } from '../failure/replay-pick.js';
import { assertTopicExists, type BrowsedRecord, readRanges } from '../kafka/browse.js';
import {
  type Admin,
  createKafka,
  type KafkaConnection,
  Partitioners,
  type Producer,
} from '../kafka/client.js';
import { type TopicTail, tailTopics } from '../kafka/tail.js';
import {
  computeLag,
  DesiredReplicas,
  dlqDepth,
  type PartitionLag,
  replayedSets,
  totalLag,
} from '../lag/lag.js';
import type { ReplayedSet } from '../lag/replayed.js';
import type { Logger } from '../observability/logger.js';
import {
  CONTROL_TOPIC,
  type ControlCommand,
  parseControl,
  parseSnapshot,
  STALE_AFTER_MS,
  STATUS_TOPIC,
  type WorkerSnapshot,
  type WorkerState,
} from '../status/snapshot.js';
import { ensureStatusTopics, statusTopicsExist } from '../status/topics.js';
import { findDelayBuckets } from '../topology/delays.js';
import { topicNames } from '../topology/topics.js';
import type { OutboxWatch } from './outbox.js';

/** How often lag, DLQ depth and rates are sampled (the charts' resolution). */
export const SAMPLE_INTERVAL_MS = 5000;
/** The charts' span. */
export const HISTORY_MS = 15 * 60 * 1000;
/** Workers silent for longer than this are no longer listed (a crashed worker leaves no tombstone). */
export const FORGET_AFTER_MS = 60 * 60 * 1000;
/** Newest dead letters kept in memory per DLQ. */
const DLQ_CACHE = 5000;

export interface WorkerEntry {
  snapshot: WorkerSnapshot;
  previous?: WorkerSnapshot;
}

/**
 * A worker's state as shown: what it reported, or `stopped` once it went silent. A worker that
 * stops cleanly removes itself; a killed one leaves its last snapshot, which said `running`.
 */
export type ShownWorkerState = WorkerState | 'stopped';

export interface Point {
  at: number;
  lag: number;
  completedPerSec: number;
  failedPerSec: number;
}

export interface GroupInfo {
  group: string;
  topic: string;
  tiers: { topic: string; delayMs: number }[];
  dlq: string;
  history: Point[];
  lag: PartitionLag[];
  /** Delay buckets of the topic (delayed jobs) and the jobs waiting in each: not lag. */
  delays: { topic: string; ms: number; waiting: number }[];
  lagAt: number | undefined;
  dlqDepth: number | undefined;
  desiredReplicas: number | undefined;
  error: string | undefined;
  /** The job topic was deleted: the group is hidden unless a worker still reports or it is pinned. */
  topicGone: boolean;
  /** Last time records came in or were processed (a worker's counters, the topic's offsets moved). */
  activeAt: number | undefined;
  /** Last time jobs were dead-lettered or replayed (a worker's dead counter, the DLQ depth moved). */
  dlqActiveAt: number | undefined;
  /** Sum of the log-end and committed offsets at the last sample: a change is activity. */
  offsetsSum: number | undefined;
}

export interface GroupView extends GroupInfo {
  live: WorkerEntry[];
  /** Workers silent for longer than STALE_AFTER_MS (shown as stopped). */
  stale: WorkerEntry[];
  /** Pinned with `--group`: shown even when its topic is gone. */
  pinned: boolean;
  control: ControlCommand | undefined;
  completedPerSec: number;
  failedPerSec: number;
  oldestPendingAgeSeconds: number;
}

export interface ReplayTask {
  id: string;
  topic: string;
  filter: { errorClass?: string; key?: string; since?: number };
  rate: number | undefined;
  limit: number | undefined;
  startedAt: number;
  progress: { scanned: number; matched: number; sent: number };
  result?: ReplayResult;
  error?: string;
  /** A replay that stopped partway: its jobs of a batch whose commit got no answer (see `error`). */
  stopped?: { unconfirmed: number; reason: string };
}

export interface DeadLetter {
  job: DeadJob;
  record: BrowsedRecord;
  replayed: boolean;
}

function newInfo(group: string, topic: string, tiers: GroupInfo['tiers'], dlq: string): GroupInfo {
  return {
    group,
    topic,
    tiers,
    dlq,
    history: [],
    lag: [],
    delays: [],
    lagAt: undefined,
    dlqDepth: undefined,
    desiredReplicas: undefined,
    error: undefined,
    topicGone: false,
    activeAt: undefined,
    dlqActiveAt: undefined,
    offsetsSum: undefined,
  };
}

function rate(e: WorkerEntry, field: 'completed' | 'failed'): number {
  const { snapshot: s, previous: p } = e;
  if (!p || p.startedAt !== s.startedAt || s.at <= p.at) return 0;
  return Math.max(0, s.counters[field] - p.counters[field]) / ((s.at - p.at) / 1000);
}

/**
 * What the console knows, all of it from Kafka: worker snapshots and control commands (tailing the
 * two compacted topics), lag, DLQ depth and desired replicas per group (sampled every 5 s with
 * the admin client), the last 15 minutes of those in memory for the charts. No database.
 */
export class ConsoleModel {
  readonly workers = new Map<string, WorkerEntry>();
  readonly controls = new Map<string, ControlCommand>();
  readonly tasks = new Map<string, ReplayTask>();
  private readonly infos = new Map<string, GroupInfo>();
  private readonly desired = new Map<string, DesiredReplicas>();
  private readonly dlqCache = new Map<
    string,
    { next: Map<number, number>; records: BrowsedRecord[]; busy?: Promise<void> | undefined }
  >();
  /**
   * Dead letters this console replayed (`<dlq>:<partition>:<offset>`). A pick commits its replay
   * group's offsets in a Kafka transaction, and the broker answers offset reads with the old value
   * until the transaction's marker is written: without this, the page shown right after a replay
   * could still offer to replay the job.
   */
  private readonly picked = new Set<string>();
  private admin: Admin | undefined;
  private producer: Producer | undefined;
  private tail: TopicTail | undefined;
  private timers: NodeJS.Timeout[] = [];
  private sampling = false;
  private stopped = false;
  private taskCount = 0;
  /** The transactional outbox (`--database-url`), when the console watches one. */
  outbox: OutboxWatch | undefined;
  /** Set once the status topics are followed. */
  feedReady = false;
  feedError: string | undefined;

  constructor(
    readonly connection: KafkaConnection,
    private readonly opts: { readOnly: boolean; pinnedGroups: string[]; logger: Logger },
  ) {}

  /**
   * kafkajs asks the brokers for the metadata of every topic its client ever used, and fails every
   * call once one of them was deleted ("This server does not host this topic-partition"). The
   * console reads many groups' topics, and topics come and go: it renews its admin client when a
   * topic it asked about is gone, and when a call fails that way.
   */
  private readonly adminTopics = new Set<string>();

  private async renewAdmin(): Promise<void> {
    const old = this.admin;
    const admin = createKafka(this.connection).admin();
    await admin.connect();
    this.admin = admin;
    this.adminTopics.clear();
    await old?.disconnect().catch(() => undefined);
  }

  /** Runs `fn` with the admin client, renewed and tried once more after a stale-metadata failure. */
  private async withAdmin<T>(topics: string[], fn: (admin: Admin) => Promise<T>): Promise<T> {
    for (const t of topics) this.adminTopics.add(t);
    try {
      return await fn(this.admin!);
    } catch (error) {
      if (!/does not host this topic-partition/.test((error as Error).message)) throw error;
      await this.renewAdmin();
      for (const t of topics) this.adminTopics.add(t);
      return await fn(this.admin!);
    }
  }

  async start(): Promise<void> {
    this.admin = createKafka(this.connection).admin();
    await this.admin.connect();
    if (!this.opts.readOnly) {
      await ensureStatusTopics(this.admin);
      this.producer = createKafka(this.connection).producer({
        createPartitioner: Partitioners.DefaultPartitioner,
        allowAutoTopicCreation: false,
      });
      await this.producer.connect();
    }
    await this.follow();
    const sample = setInterval(() => void this.sample(), SAMPLE_INTERVAL_MS);
    this.timers.push(sample);
    void this.sample();
  }

  /** Tails the status and control topics; a read-only console waits for a worker to create them. */
  private async follow(): Promise<void> {
    if (this.stopped || this.tail) return;
    try {
      if (!(await statusTopicsExist(this.admin!))) {
        this.feedError = 'no worker has published a status yet (the topic __strand_status does not exist)';
        this.timers.push(setTimeout(() => void this.follow(), SAMPLE_INTERVAL_MS));
        return;
      }
      this.tail = await tailTopics(this.connection, {
        topics: [STATUS_TOPIC, CONTROL_TOPIC],
        groupPrefix: 'strand-console',
        maxWaitMs: 500,
        onRecord: (topic, _partition, m) => this.onRecord(topic, m.key, m.value),
      });
      this.feedReady = true;
      this.feedError = undefined;
    } catch (error) {
      this.feedError = (error as Error).message;
      this.timers.push(setTimeout(() => void this.follow(), SAMPLE_INTERVAL_MS));
    }
  }

  private onRecord(topic: string, keyBytes: Buffer | null, value: Buffer | null): void {
    const key = keyBytes?.toString('utf8');
    if (key === undefined) return;
    if (topic === CONTROL_TOPIC) {
      const command = parseControl(value);
      if (command) this.controls.set(key, command);
      return;
    }
    if (value === null) {
      this.workers.delete(key);
      return;
    }
    const snapshot = parseSnapshot(value);
    if (!snapshot) return;
    const before = this.workers.get(key);
    this.workers.set(key, before ? { snapshot, previous: before.snapshot } : { snapshot });
    this.remember(snapshot, before?.snapshot);
  }

  private remember(s: WorkerSnapshot, previous: WorkerSnapshot | undefined): void {
    let info = this.infos.get(s.group);
    if (info) {
      info.topic = s.topic;
      info.tiers = s.tiers;
      info.dlq = s.dlq;
    } else {
      info = newInfo(s.group, s.topic, s.tiers, s.dlq);
      this.infos.set(s.group, info);
    }
    if (previous && previous.startedAt === s.startedAt) {
      const [now, before] = [s.counters, previous.counters];
      if (
        now.completed !== before.completed ||
        now.failed !== before.failed ||
        now.retried !== before.retried
      )
        info.activeAt = Math.max(info.activeAt ?? 0, s.at);
      if (now.dead !== before.dead) info.dlqActiveAt = Math.max(info.dlqActiveAt ?? 0, s.at);
    }
    if (s.autoscale && !this.desired.has(s.group))
      this.desired.set(s.group, new DesiredReplicas(s.autoscale));
  }

  /** A `--group` without snapshots: its topic from its committed offsets, its tiers by name. */
  private async discover(group: string): Promise<void> {
    if (this.infos.has(group) || !this.admin) return;
    const offsets = await this.admin.fetchOffsets({ groupId: group });
    const topic = offsets.map((o) => o.topic).find((t) => !/\.(dlq|retry\.\d+)$/.test(t));
    if (!topic) return;
    const all = new Set(await this.admin.listTopics());
    const tiers: { topic: string; delayMs: number }[] = [];
    for (let n = 1; all.has(`${topic}.retry.${n}`); n++)
      tiers.push({ topic: `${topic}.retry.${n}`, delayMs: 0 });
    this.infos.set(group, newInfo(group, topic, tiers, topicNames(topic, 0).dlq));
  }

  /** Workers heard from within the forget window, newest first. */
  listedWorkers(now = Date.now()): WorkerEntry[] {
    return [...this.workers.values()]
      .filter((w) => now - w.snapshot.at <= FORGET_AFTER_MS)
      .sort((a, b) => a.snapshot.group.localeCompare(b.snapshot.group) || b.snapshot.at - a.snapshot.at);
  }

  isStale(w: WorkerEntry, now = Date.now()): boolean {
    return now - w.snapshot.at > STALE_AFTER_MS;
  }

  shownState(w: WorkerEntry, now = Date.now()): ShownWorkerState {
    return this.isStale(w, now) ? 'stopped' : w.snapshot.state;
  }

  /**
   * Groups to show: with a listed worker, pinned, or seen live while the console ran; a group
   * whose topic was deleted only while a worker of it still reports, or when pinned.
   */
  groups(now = Date.now()): GroupView[] {
    return this.candidates(now).filter((g) => !g.topicGone || g.live.length > 0 || g.pinned);
  }

  /** Every group the console follows, shown or not (sampling un-hides a topic created again). */
  private candidates(now: number): GroupView[] {
    const listed = this.listedWorkers(now);
    const pinned = new Set(this.opts.pinnedGroups);
    const names = new Set([...listed.map((w) => w.snapshot.group), ...pinned]);
    for (const info of this.infos.values()) if (info.history.length > 0) names.add(info.group);
    const out: GroupView[] = [];
    for (const group of [...names].sort()) {
      const info = this.infos.get(group);
      if (!info) continue;
      const mine = listed.filter((w) => w.snapshot.group === group);
      const live = mine.filter((w) => !this.isStale(w, now));
      out.push({
        ...info,
        live,
        stale: mine.filter((w) => this.isStale(w, now)),
        pinned: pinned.has(group),
        control: this.controls.get(group),
        completedPerSec: live.reduce((s, w) => s + rate(w, 'completed'), 0),
        failedPerSec: live.reduce((s, w) => s + rate(w, 'failed'), 0),
        oldestPendingAgeSeconds: Math.max(0, ...live.map((w) => w.snapshot.oldestPendingAgeSeconds)),
      });
    }
    return out;
  }

  group(name: string): GroupView | undefined {
    return this.groups().find((g) => g.group === name);
  }

  /** Job topics of the known groups. */
  jobTopics(): string[] {
    return [...new Set(this.groups().map((g) => g.topic))].sort();
  }

  /**
   * The job topic whose records (`jobs`) or dead letters (`dlq`) moved last, as far as this console
   * saw; undefined when it saw none move yet.
   */
  mostActiveTopic(kind: 'jobs' | 'dlq'): string | undefined {
    return mostActive(this.groups(), kind);
  }

  /** Reads lag, DLQ depth and rates of every group once (every 5 s). */
  async sample(): Promise<void> {
    if (this.sampling || this.stopped || !this.admin) return;
    this.sampling = true;
    try {
      for (const group of this.opts.pinnedGroups)
        await this.discover(group).catch((e: unknown) =>
          this.opts.logger.debug({ err: e }, 'discover failed'),
        );
      const now = Date.now();
      // A group whose topic was deleted is not asked about: kafkajs would retry its metadata for
      // seconds and hold up every other group's sample.
      const existing = new Set(await this.admin.listTopics());
      if ([...this.adminTopics].some((t) => !existing.has(t))) await this.renewAdmin();
      for (const view of this.candidates(now)) {
        const info = this.infos.get(view.group)!;
        info.topicGone = !existing.has(info.topic);
        if (info.topicGone) {
          // Not an error to show: the topic was deleted (a finished test, a retired pipeline).
          info.error = undefined;
          info.history = [];
          continue;
        }
        try {
          const topics = [info.topic, ...info.tiers.map((t) => t.topic)].filter((t) => existing.has(t));
          const tierDelays = Object.fromEntries(info.tiers.map((t) => [t.topic, t.delayMs]));
          info.lag = await this.withAdmin(topics, (admin) =>
            computeLag(admin, info.group, topics, { tierDelays, now }),
          );
          const buckets = findDelayBuckets(info.topic, existing);
          const names = buckets.map((b) => b.topic);
          const delayRows = names.length
            ? await this.withAdmin(names, (admin) =>
                computeLag(admin, info.group, names, { delayTopics: new Set(names), now }),
              )
            : [];
          info.delays = buckets.map((b) => ({
            topic: b.topic,
            ms: b.ms,
            waiting: totalLag(delayRows.filter((r) => r.topic === b.topic)),
          }));
          info.lagAt = now;
          const depth = existing.has(info.dlq)
            ? await this.withAdmin([info.dlq], (admin) => dlqDepth(admin, info.topic, info.dlq))
            : 0;
          // Activity times are taken per group, not per round, so two groups rarely tie.
          const sum = info.lag.reduce((a, l) => a + l.end + (l.committed ?? 0), 0);
          if (info.offsetsSum !== undefined && sum !== info.offsetsSum)
            info.activeAt = Math.max(info.activeAt ?? 0, Date.now());
          info.offsetsSum = sum;
          if (info.dlqDepth !== undefined && depth !== info.dlqDepth)
            info.dlqActiveAt = Math.max(info.dlqActiveAt ?? 0, Date.now());
          info.dlqDepth = depth;
          let desired = this.desired.get(info.group);
          if (!desired) {
            desired = new DesiredReplicas({
              targetLagPerReplica: 500,
              minReplicas: 1,
              maxReplicas: 50,
              scaleDownWindowMs: 300_000,
            });
            this.desired.set(info.group, desired);
          }
          info.desiredReplicas = desired.update(totalLag(info.lag, 'due'), now);
          info.error = undefined;
          info.history.push({
            at: now,
            lag: totalLag(info.lag),
            completedPerSec: view.completedPerSec,
            failedPerSec: view.failedPerSec,
          });
          while (info.history.length > 0 && info.history[0]!.at < now - HISTORY_MS) info.history.shift();
        } catch (error) {
          // Deleted while it was being sampled: gone, not failing.
          const still = await this.admin
            .listTopics()
            .then((t) => t.includes(info.topic))
            .catch(() => true);
          info.topicGone = !still;
          info.error = still ? (error as Error).message.split('\n')[0] : undefined;
        }
      }
    } finally {
      this.sampling = false;
    }
  }

  /** Sends pause/resume to every worker of `group` (the latest command per group is its state). */
  async sendControl(group: string, action: 'pause' | 'resume'): Promise<ControlCommand> {
    if (!this.producer) throw new Error('read-only console');
    const command: ControlCommand = { v: 1, group, action, at: Date.now(), by: `console@${hostname()}` };
    await this.producer.send({
      topic: CONTROL_TOPIC,
      acks: -1,
      messages: [{ key: group, value: JSON.stringify(command) }],
    });
    this.controls.set(group, command);
    return command;
  }

  /**
   * The newest dead letters of `jobTopic` (up to 5,000), newest first, read incrementally: only
   * records appended since the last call are fetched.
   */
  async deadLetters(jobTopic: string, dlq = topicNames(jobTopic, 0).dlq): Promise<DeadLetter[]> {
    let cache = this.dlqCache.get(dlq);
    if (!cache) {
      cache = { next: new Map(), records: [] };
      this.dlqCache.set(dlq, cache);
    }
    const c = cache;
    while (c.busy) await c.busy;
    let sets = new Map<number, ReplayedSet[]>();
    c.busy = (async () => {
      const bounds = await this.withAdmin([dlq], async (admin) => {
        await assertTopicExists(admin, dlq);
        return admin.fetchTopicOffsets(dlq);
      });
      const ranges = bounds
        .map((b) => {
          const high = Number(b.high);
          const low = Number(b.low);
          const from = Math.max(low, high - DLQ_CACHE, c.next.get(b.partition) ?? 0);
          return { partition: b.partition, from, to: high, low };
        })
        .filter((r) => r.from < r.to);
      if (ranges.length > 0) {
        // Only what was read counts as read: a read cut short (a slow group join) is asked for again.
        const progress = new Map<number, number>();
        const fresh = await readRanges(this.connection, dlq, ranges, { progress });
        for (const r of ranges) c.next.set(r.partition, progress.get(r.partition) ?? r.from);
        c.records.push(...fresh);
      }
      const lows = new Map(bounds.map((b) => [b.partition, Number(b.low)]));
      c.records = c.records
        .filter((r) => Number(r.message.offset) >= (lows.get(r.partition) ?? 0))
        .sort((a, b) => Number(a.message.timestamp) - Number(b.message.timestamp))
        .slice(-DLQ_CACHE);
      sets = await this.withAdmin([dlq], (admin) => replayedSets(admin, jobTopic, dlq));
    })().finally(() => {
      c.busy = undefined;
    });
    await c.busy;
    return c.records
      .map((record) => ({
        job: toDeadJob(record.partition, record.message),
        record,
        replayed:
          this.picked.has(`${dlq}:${record.partition}:${record.message.offset}`) ||
          wasReplayed(sets.get(record.partition), Number(record.message.offset)),
      }))
      .reverse();
  }

  /** Replays one dead letter of `topic`'s DLQ (exactly once, see replayDeadJob). */
  async replayOne(topic: string, at: { partition: number; offset: number }): Promise<PickResult> {
    const result = await replayDeadJob(this.connection, topic, at);
    if (result.status !== 'not-found')
      this.picked.add(`${topicNames(topic, 0).dlq}:${at.partition}:${at.offset}`);
    return result;
  }

  /** Starts a filtered replay in the background; its page follows the progress. */
  startReplay(
    topic: string,
    filter: ReplayTask['filter'],
    opts: { rate?: number | undefined; limit?: number | undefined },
  ): ReplayTask {
    const task: ReplayTask = {
      id: String(++this.taskCount),
      topic,
      filter,
      rate: opts.rate,
      limit: opts.limit,
      startedAt: Date.now(),
      progress: { scanned: 0, matched: 0, sent: 0 },
    };
    this.tasks.set(task.id, task);
    replayDeadJobs(this.connection, topic, {
      ...filter,
      ...(opts.rate ? { rate: opts.rate } : {}),
      ...(opts.limit ? { limit: opts.limit } : {}),
      onProgress: (p) => {
        task.progress = p;
      },
    }).then(
      (result) => {
        task.result = result;
        task.progress = { scanned: result.scanned, matched: result.matched, sent: result.sent };
      },
      (error: unknown) => {
        task.error = (error as Error).message.split('\n')[0] ?? String(error);
        if (error instanceof ReplayStoppedError) {
          // Exactly what its committed transactions sent, not the progress of the failed batch.
          task.progress = error.progress;
          task.stopped = { unconfirmed: error.unconfirmed, reason: error.reason };
        }
      },
    );
    return task;
  }

  /** Dead letters of `jobTopic` the outbox relay sent there (its schema rejected), among the newest 5,000. */
  async outboxRejected(jobTopic: string): Promise<number> {
    const dlq = topicNames(jobTopic, 0).dlq;
    if (!(await this.admin!.listTopics()).includes(dlq)) return 0;
    return (await this.deadLetters(jobTopic, dlq)).filter((d) => d.job.reason === 'outbox-rejected').length;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.outbox?.stop();
    for (const t of this.timers) clearTimeout(t);
    await this.tail?.stop();
    await this.producer?.disconnect().catch(() => undefined);
    await this.admin?.disconnect().catch(() => undefined);
  }
}

/** The topic of the group with the latest activity of `kind` (ties: the first by name). */
export function mostActive(
  groups: Pick<GroupView, 'topic' | 'activeAt' | 'dlqActiveAt'>[],
  kind: 'jobs' | 'dlq',
): string | undefined {
  let best: { topic: string; at: number } | undefined;
  for (const g of groups) {
    const at = kind === 'jobs' ? g.activeAt : g.dlqActiveAt;
    if (at !== undefined && (!best || at > best.at)) best = { topic: g.topic, at };
  }
  return best?.topic;
}
