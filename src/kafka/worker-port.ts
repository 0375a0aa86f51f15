import {
  type Admin,
  type Consumer,
  type EachBatchPayload,
  type Kafka,
  type PartitionAssigner,
  PartitionAssigners,
  type Producer,
} from 'kafkajs';
import type { Logger } from '../observability/logger.js';
import type {
  CommittedOffset,
  ConsumerPort,
  FetchedBatch,
  GroupHooks,
  OffsetCommit,
  ProducePort,
} from '../ports.js';
import { coPartitionedAssigner } from './assigner.js';
import { holdRejoin } from './rejoin-hold.js';
import { type PartitionCounts, sendAcknowledged } from './send.js';

export interface KafkaConsumerPortOptions {
  groupId: string;
  /** The job topic and its retry tiers. */
  topics: string[];
  fromBeginning: boolean;
  sessionTimeoutMs: number;
  heartbeatIntervalMs: number;
  rebalanceTimeoutMs: number;
  partitionsConsumedConcurrently: number;
  logger: Logger;
}

/** The part of kafkajs' Cluster the rejoin gate wraps (passed to partition assigners, as documented). */
interface CoordinatorLookup {
  findGroupCoordinator(args: { groupId: string }): Promise<unknown>;
}

/**
 * The worker's consumer port on kafkajs: a group consumer without auto-commit whose batches go to
 * the core's intake.
 *
 * Drain before rejoin: kafkajs has no onPartitionsRevoked. When it sees a rebalance — in our
 * intake's heartbeat or in its own heartbeat after an empty fetch — it emits REBALANCING and
 * rejoins at once. The first thing a rejoin does is look up the group coordinator on the cluster
 * object kafkajs hands to partition assigners; the port wraps that lookup so the JoinGroup waits
 * for `hooks.beforeRejoin()` (the core finishes and commits running jobs with the old generation).
 */
export class KafkaConsumerPort implements ConsumerPort {
  private consumer: Consumer | undefined;
  private hooks: GroupHooks | undefined;
  private onBatch: ((batch: FetchedBatch) => Promise<void>) | undefined;
  private rejoinGate: Promise<void> | undefined;
  private starting: Promise<void> | undefined;
  /** The heartbeat of the latest fetched batch (kafkajs' runner): it keeps the session while a rejoin is held. */
  private lastHeartbeat: (() => Promise<void>) | undefined;
  /**
   * Topics paused whole (`pause(topics)`). In kafkajs a batch's own pause of one partition turns a
   * whole-topic pause off (its subscription state keeps one or the other), and resuming one
   * partition of a paused topic fetches it: the whole-topic pause is put back after the one and
   * the other is not done (the topic's resume resumes every partition).
   */
  private readonly pausedTopics = new Set<string>();
  /** The partition indexes of the latest assignment: the co-partitioned assigner keeps them if it can. */
  private ownedIndexes: number[] = [];

  /**
   * The coordinator waits `rebalanceTimeout` for our JoinGroup; a rebalance is noticed within a
   * heartbeat (+1 s). The session does not end meanwhile: the held rejoin heartbeats (`holdRejoin`).
   */
  readonly rejoinDeadlineMs: number;

  constructor(
    private readonly kafka: Kafka,
    private readonly admin: Admin,
    private readonly opts: KafkaConsumerPortOptions,
  ) {
    this.rejoinDeadlineMs = this.groupRebalanceTimeoutMs() - opts.heartbeatIntervalMs - 1000;
  }

  /** What the consumer asks the coordinator to wait for a rejoin: at least 60 s, and more than the drain. */
  private groupRebalanceTimeoutMs(): number {
    return Math.max(60_000, this.opts.rebalanceTimeoutMs + 10_000);
  }

  /**
   * The co-partitioned assignment (assigner.ts), and kafkajs' round robin for a group whose older
   * members know only that one (the coordinator picks a protocol every member offers). The first
   * one also holds the rejoin until the drain ended (both get the same cluster object).
   */
  private gatedAssigners(): PartitionAssigner[] {
    const gated: PartitionAssigner = (config) => {
      const cluster = config.cluster as unknown as CoordinatorLookup;
      const lookup = cluster.findGroupCoordinator.bind(cluster);
      cluster.findGroupCoordinator = async (args) => {
        const gate = this.rejoinGate;
        this.rejoinGate = undefined;
        if (gate) await this.holdRejoin(gate);
        return lookup(args);
      };
      return coPartitionedAssigner(() => this.ownedIndexes)(config);
    };
    return [gated, PartitionAssigners.roundRobin];
  }

  /** Holds the JoinGroup until the drain settled, heartbeating meanwhile (rejoin-hold.ts). */
  private holdRejoin(gate: Promise<void>): Promise<void> {
    return holdRejoin(gate, this.opts.heartbeatIntervalMs, () => this.lastHeartbeat?.(), delay);
  }

  start(hooks: GroupHooks, onBatch: (batch: FetchedBatch) => Promise<void>): Promise<void> {
    this.hooks = hooks;
    this.onBatch = onBatch;
    this.starting = this.connectAndRun();
    return this.starting;
  }

  private async connectAndRun(): Promise<void> {
    const o = this.opts;
    const hooks = this.hooks!;
    const consumer = this.kafka.consumer({
      groupId: o.groupId,
      sessionTimeout: o.sessionTimeoutMs,
      heartbeatInterval: o.heartbeatIntervalMs,
      rebalanceTimeout: this.groupRebalanceTimeoutMs(),
      allowAutoTopicCreation: false,
      // read_committed (kafkajs' default, said here): records of aborted or open transactions —
      // exactly-once rounds, transactional replays — are never handed over.
      readUncommitted: false,
      partitionAssigners: this.gatedAssigners(),
      // Fetched-but-unaccepted records are memory too: keep fetches small next to the job buffer.
      maxBytesPerPartition: 512 * 1024,
      maxBytes: 4 * 1024 * 1024,
      // A resumed retry-tier partition is fetched only when the current long poll returns: keep it short.
      maxWaitTimeInMs: 200,
      retry: { retries: 5, initialRetryTime: 100, maxRetryTime: 2000 },
    });
    this.consumer = consumer;
    const ev = consumer.events;
    // Synchronous, right before kafkajs starts its JoinGroup (whose coordinator lookup waits for the gate).
    consumer.on(ev.REBALANCING, () => {
      this.rejoinGate ??= hooks.beforeRejoin();
    });
    // The member id of the last join: kept across a rebalance only if the coordinator kept this
    // member (an expelled member's JoinGroup gets UNKNOWN_MEMBER_ID and joins under a new one).
    let memberId: string | undefined;
    consumer.on(ev.GROUP_JOIN, (e) => {
      this.ownedIndexes = [...new Set(Object.values(e.payload.memberAssignment).flat())];
      const continuous = memberId !== undefined && e.payload.memberId === memberId;
      memberId = e.payload.memberId;
      hooks.assigned(e.payload.memberAssignment, continuous);
    });
    consumer.on(ev.CRASH, (e) => hooks.crashed(e.payload.error, e.payload.restart));
    consumer.on(ev.RECEIVED_UNSUBSCRIBED_TOPICS, (e) =>
      hooks.unsubscribedTopics?.((e.payload as { topicsNotSubscribed: string[] }).topicsNotSubscribed),
    );
    // A fetch of nothing but transaction markers or aborted records never reaches eachBatch:
    // tell the intake how far it went, so the commit point can pass them.
    consumer.on(ev.START_BATCH_PROCESS, (e) => {
      const p = e.payload as { topic: string; partition: number; batchSize: number; lastOffset: string };
      if (p.batchSize !== 0) return;
      void this.onBatch!({
        topic: p.topic,
        partition: p.partition,
        records: [],
        lastOffset: p.lastOffset,
        resolveOffset: () => undefined,
        heartbeat: async () => undefined,
        isActive: () => true,
        pause: () => () => undefined,
      }).catch((error: unknown) => o.logger.warn({ err: error }, 'could not record a fetch without jobs'));
    });
    await consumer.connect();
    await consumer.subscribe({ topics: o.topics, fromBeginning: o.fromBeginning });
    await this.run();
  }

  private run(): Promise<void> {
    return this.consumer!.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      partitionsConsumedConcurrently: this.opts.partitionsConsumedConcurrently,
      eachBatch: (payload) => {
        this.lastHeartbeat = payload.heartbeat;
        return this.onBatch!(toFetchedBatch(payload, () => this.repause(payload.batch.topic)));
      },
    });
  }

  async restart(): Promise<void> {
    await this.consumer!.connect();
    await this.run();
  }

  resubscribe(topics: readonly string[]): Promise<void> {
    const consumer = this.consumer;
    if (!consumer) return Promise.resolve();
    this.opts.topics = [...topics];
    // kafkajs subscribes only while not running: stop (leaves the group), subscribe, run (joins).
    // A stop() meanwhile waits for this, as for the start.
    this.starting = (async () => {
      await consumer.stop();
      await consumer.subscribe({ topics: [...topics], fromBeginning: this.opts.fromBeginning });
      await this.run();
    })();
    return this.starting;
  }

  /**
   * Commits, and throws unless the coordinator took it: kafkajs' `commitOffsets` resolves without
   * sending anything when its runner is not running (after a crash, during a restart), and when a
   * failed attempt finds it stopped. A commit the worker took for applied then let the traces of
   * the `exactly-once` chaos scenario show commits by members that owned nothing, and the next
   * owner's commit as a move backwards. kafkajs announces each commit it made (COMMIT_OFFSETS,
   * synchronously, before `commitOffsets` resolves), so one that was not announced did not happen.
   */
  async commit(offsets: readonly OffsetCommit[]): Promise<void> {
    const consumer = this.consumer;
    if (!consumer) throw new Error('consumer not started');
    const wanted = offsets.map((o) => `${o.topic}:${o.partition}@${o.offset}`);
    let applied = false;
    const off = consumer.on(consumer.events.COMMIT_OFFSETS, (e) => {
      const sent = new Set(
        e.payload.topics.flatMap((t) => t.partitions.map((p) => `${t.topic}:${p.partition}@${p.offset}`)),
      );
      if (wanted.every((w) => sent.has(w))) applied = true;
    });
    try {
      await consumer.commitOffsets(
        offsets.map((o) => ({
          topic: o.topic,
          partition: o.partition,
          offset: String(o.offset),
          metadata: o.metadata,
        })),
      );
    } finally {
      off();
    }
    if (!applied)
      throw new Error('offset commit not sent: the consumer is not running (it crashed or is restarting)');
  }

  async committed(topics: readonly string[]): Promise<CommittedOffset[]> {
    const res = await this.admin.fetchOffsets({ groupId: this.opts.groupId, topics: [...topics] });
    return res.flatMap(({ topic, partitions }) =>
      partitions.map((p) => ({
        topic,
        partition: p.partition,
        offset: Number(p.offset),
        metadata: p.metadata,
      })),
    );
  }

  pause(topics: readonly string[]): void {
    for (const topic of topics) this.pausedTopics.add(topic);
    this.flow((c) => c.pause(topics.map((topic) => ({ topic }))));
  }

  resume(topics: readonly string[]): void {
    for (const topic of topics) this.pausedTopics.delete(topic);
    this.flow((c) => c.resume(topics.map((topic) => ({ topic }))));
  }

  resumePartitions(partitions: readonly { topic: string; partition: number }[]): void {
    const resumable = partitions.filter(({ topic }) => !this.pausedTopics.has(topic));
    if (resumable.length === 0) return;
    this.flow((c) => c.resume(resumable.map(({ topic, partition }) => ({ topic, partitions: [partition] }))));
  }

  /** After a batch paused its partition: the topic's whole-topic pause again, if it had one. */
  private repause(topic: string): void {
    if (this.pausedTopics.has(topic)) this.flow((c) => c.pause([{ topic }]));
  }

  /**
   * kafkajs throws from pause/resume while its consumer is in no group (before `run`, or once a
   * stop disconnected it, e.g. a partition verified after a join as the worker stops): there is
   * nothing to pause or resume then.
   */
  private flow(fn: (consumer: Consumer) => void): void {
    if (!this.consumer) return;
    try {
      fn(this.consumer);
    } catch (error) {
      if (!/consumer#run must be called first/.test((error as Error).message)) throw error;
    }
  }

  async stop(): Promise<void> {
    // A stop during start waits for it, so nothing it opens is left behind.
    await this.starting?.catch(() => undefined);
    await this.consumer?.disconnect();
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}

function toFetchedBatch(payload: EachBatchPayload, afterPause: () => void): FetchedBatch {
  const { batch } = payload;
  return {
    topic: batch.topic,
    partition: batch.partition,
    records: batch.messages,
    lastOffset: batch.lastOffset(),
    resolveOffset: payload.resolveOffset,
    heartbeat: payload.heartbeat,
    isActive: () => payload.isRunning() && !payload.isStale(),
    pause: () => {
      const resume = payload.pause();
      afterPause();
      return resume;
    },
  };
}

/** The worker's produce port on kafkajs: acknowledged sends (acks=all, every partition answered). */
export class KafkaProducePort implements ProducePort {
  constructor(
    private readonly producer: Producer,
    private readonly counts: PartitionCounts,
    private readonly onResend: (partitions: string[]) => void,
  ) {}

  async send(
    batch: readonly { topic: string; messages: readonly import('../ports.js').OutgoingRecord[] }[],
  ): Promise<void> {
    await sendAcknowledged(
      this.producer,
      batch.map(({ topic, messages }) => ({ topic, messages: messages.map((m) => ({ ...m })) })),
      { counts: this.counts, onResend: this.onResend },
    );
  }
}
