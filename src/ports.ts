/**
 * The narrow port between the worker core and Kafka (docs/architecture.md, "The port"). The core
 * (intake, assignment, committer, dispatcher, executor) sees Kafka only through these interfaces;
 * `src/kafka/worker-port.ts` implements them  with kafkajs and `test/sim/` with an in-memory model
 * of partitioned logs and a consumer group. Nothing in `src/worker/` imports kafkajs or `src/kafka/` (the facade, worker.ts, wires the adapter).
 */

/** Header values as Kafka carries them. */
export type HeaderValue = Buffer | string | (Buffer | string)[] | undefined;
export type RecordHeaders = { [name: string]: HeaderValue };

/** A record as fetched. */
export interface FetchedRecord {
  readonly offset: string;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  readonly headers?: RecordHeaders | undefined;
}

/** A record to write (retry tier, DLQ, parking). The port picks the partition from the key unless given. */
export interface OutgoingRecord {
  readonly key: string | Buffer | null;
  readonly value: Buffer | null;
  readonly headers: RecordHeaders;
  readonly partition?: number;
}

/** Records of one partition, handed to the intake in offset order. */
export interface FetchedBatch {
  readonly topic: string;
  readonly partition: number;
  readonly records: readonly FetchedRecord[];
  /**
   * The last offset this fetch covered, including records the client does not hand over
   * (transaction markers, aborted records). A fetch of only such records comes as a batch with
   * no records, so the commit point can move past them.
   */
  readonly lastOffset: string;
  /** The fetch position moves past `offset` (the record was accepted or skipped). */
  resolveOffset(offset: string): void;
  /**
   * Keeps the membership alive while the intake waits for buffer room. Rejects when the group
   * rebalances; the intake lets the error through so the client can rejoin (after
   * `GroupHooks.beforeRejoin`).
   */
  heartbeat(): Promise<void>;
  /** False once this fetch is no longer valid: the consumer stops, or the group moved on. */
  isActive(): boolean;
  /** Stops fetching this partition from its next unresolved offset; the result resumes it. */
  pause(): () => void;
}

/** An offset to commit, with the offset map (metadata) that goes with it. */
export interface OffsetCommit {
  readonly topic: string;
  readonly partition: number;
  /** The next offset to read. */
  readonly offset: number;
  readonly metadata: string;
}

/** A committed offset as the group coordinator has it. */
export interface CommittedOffset {
  readonly topic: string;
  readonly partition: number;
  /** -1 when the group has committed nothing for the partition. */
  readonly offset: number;
  readonly metadata: string | null;
}

/** What the consumer tells the core about its group membership. */
export interface GroupHooks {
  /**
   * The group is rebalancing and this member still holds its old generation: the client does not
   * send its JoinGroup until the returned promise settles (the Java client's onPartitionsRevoked).
   */
  beforeRejoin(): Promise<void>;
  /**
   * A join completed; `assignment` maps each topic to this member's partitions (maybe none).
   * `continuous`: this member was in the group's previous generation too (it rejoined under the
   * same member id; one the coordinator expelled gets a new one), so no other member held a
   * partition it keeps in between. Unknown when omitted.
   */
  assigned(assignment: Readonly<Record<string, readonly number[]>>, continuous?: boolean): void;
  /**
   * The consumer crashed and has left the group. `restarting`: the client restarts itself;
   * otherwise the core calls `ConsumerPort.restart()` when it wants the consumer back.
   */
  crashed(error: Error, restarting: boolean): void;
  /**
   * The assignment named topics this member does not subscribe to (the leader subscribes to more:
   * delay buckets created after this worker started); the client leaves them out.
   */
  unsubscribedTopics?(topics: readonly string[]): void;
}

/** A group consumer of the job topic and its retry tiers, without auto-commit. */
export interface ConsumerPort {
  /**
   * How long after `beforeRejoin` is called this member still holds its partitions at the
   * latest: the coordinator's rebalance timeout less the time it may take to notice the rebalance.
   * The core drains within it and drops its partitions past it. Undefined: no deadline known.
   */
  readonly rejoinDeadlineMs?: number;
  /** Connects, subscribes and starts fetching; resolves once fetching has started. */
  start(hooks: GroupHooks, onBatch: (batch: FetchedBatch) => Promise<void>): Promise<void>;
  /** Starts again after a crash the client does not recover from by itself. */
  restart(): Promise<void>;
  /**
   * Leaves the group, subscribes to `topics` instead and joins again (delay buckets created while
   * the worker runs). Absent: the subscription is fixed at start.
   */
  resubscribe?(topics: readonly string[]): Promise<void>;
  /** Commits with this member's current generation; rejects when the coordinator refuses. */
  commit(offsets: readonly OffsetCommit[]): Promise<void>;
  /** The group's committed offsets and metadata for `topics`. */
  committed(topics: readonly string[]): Promise<CommittedOffset[]>;
  pause(topics: readonly string[]): void;
  resume(topics: readonly string[]): void;
  /** Resumes single partitions (a pause made by `FetchedBatch.pause` outlives a rejoin). */
  resumePartitions(partitions: readonly { topic: string; partition: number }[]): void;
  /** Leaves the group and disconnects. */
  stop(): Promise<void>;
}

/**
 * Writes records and resolves only when every partition written to acknowledged them (acks=all):
 * only then may the source offset count as done.
 */
export interface ProducePort {
  send(batch: readonly TopicRecords[]): Promise<void>;
}

/** Records for one topic, as a round or a produce request carries them. */
export interface TopicRecords {
  readonly topic: string;
  readonly messages: readonly OutgoingRecord[];
}

/** One round's transaction: input partition `topic` / `partition`, its records, its offset (if any). */
export interface RoundRequest {
  readonly topic: string;
  readonly partition: number;
  readonly records: readonly TopicRecords[];
  readonly offset?: OffsetCommit | undefined;
}

/**
 * Exactly-once rounds (`exactlyOnce`, docs/architecture.md "Exactly-once rounds"): one Kafka
 * transaction per input partition and round, under a transactional id of its own
 * (`<group>`, topic, partition), so the next owner of a partition fences the previous one.
 */
export interface TransactionPort {
  /**
   * Takes the partition's transactional id for this worker: an earlier holder's open transaction
   * is aborted and its next step refused. Resolves only once that is done, so the group's committed
   * offset read afterwards can no longer change under this owner.
   */
  fence(topic: string, partition: number): Promise<void>;
  /**
   * One transaction: the records, then the input offset (with its offset map) for the group, then
   * commit. Rejects when the transaction did not commit (aborted, fenced, unknown): nothing of it
   * is visible to read_committed readers unless the broker had already committed it, in which
   * case its offset is committed too. Under the transactional id of input partition `topic` /
   * `partition`; without `offset`, a transaction of records alone (parking writes of a partition
   * whose round staged nothing: rounds.ts `commitNow`). Resolves with the offsets the records got,
   * in order (every message of every entry).
   */
  commitRound(round: RoundRequest): Promise<number[]>;
  /** Gives the partition's transactional id up (revoked), after any round of it in flight. */
  release(topic: string, partition: number): Promise<void>;
  /** Gives every transactional id up (the worker stopped). */
  stop(): Promise<void>;
}

/**
 * Reads the parking topic (`<topic>.parked`, compacted; strict key order, parking.ts) without a
 * consumer group: the owner of a job-topic partition reads its parking partition when it takes it.
 */
export interface ParkingPort {
  /**
   * Reads one partition from `from` (its log start if that is later) up to the end it had when the
   * read began, oldest first, tombstones included, a page at a time: `onPage` gets each page and
   * the offset the read reached (past the page's last record and any compacted gap after it)
   * before the next page is fetched. Resolves with the end. A failed read rejects; the pages
   * handed over stay valid, so the caller resumes from the last `next`. An `onPage` that throws
   * ends the read with its error.
   */
  scan(
    partition: number,
    from: number,
    onPage: (records: readonly FetchedRecord[], next: number) => void,
  ): Promise<number>;
  /** The records at these offsets, in offset order (offsets compacted away are left out). */
  read(partition: number, offsets: readonly number[]): Promise<FetchedRecord[]>;
  /**
   * Writes records to one partition (acks=all); resolves with their offsets once acknowledged.
   * `carried`: records of other topics that must become visible with them, atomically (exactly
   * once: a job's tier record with its key's state, a released job's follow-ups with its
   * tombstone; worker/round-parking.ts). Only a port inside exactly-once rounds takes them.
   */
  write(
    partition: number,
    records: readonly OutgoingRecord[],
    carried?: readonly TopicRecords[],
  ): Promise<number[]>;
  /** The partition's log end offset. */
  endOffset(partition: number): Promise<number>;
  /**
   * Takes the partition's writer fence (a transactional id per parking partition): an earlier
   * holder's write still open is aborted and its later writes are refused. The owner of job-topic
   * partition p takes it before it reads parking partition p, so no write of an earlier owner (a
   * member out of the group that has not noticed) lands after that read. Without it: unfenced.
   */
  fence?(partition: number): Promise<void>;
  /** False once a write of the partition was refused (fenced by a later `fence`) or it was never taken. */
  holds?(partition: number): boolean;
  /** Lets the partition's fence go (the job-topic partition left). */
  release?(partition: number): Promise<void>;
}

/**
 * Reads records of the job topic again by exact offsets, without a consumer group (records the
 * intake deferred for an over-share tenant: fairness/deferral.ts).
 */
export interface RecordReadPort {
  /** The records at these offsets of `partition`, in offset order (offsets compacted away are left out). */
  read(partition: number, offsets: readonly number[]): Promise<FetchedRecord[]>;
}

/** Turns a record value into job data. */
export interface JobDecoder {
  /** True when `value` decodes without a registry call (its schema is cached or it is malformed). */
  decodesLocally(value: Buffer | null): boolean;
  /**
   * Rejects with a `DecodeError` for a record that can never decode (it goes to the DLQ), with any
   * other error while the schema cannot be fetched (the job waits and retries).
   */
  decode(value: Buffer | null): Promise<{ data: unknown }>;
  /**
   * Decodes without waiting when the writer schema is in memory (undefined otherwise); throws a
   * `DecodeError` like `decode`. Optional: the hot path of a worker whose schemas are cached.
   */
  decodeCached?(value: Buffer | null): { data: unknown } | undefined;
}
