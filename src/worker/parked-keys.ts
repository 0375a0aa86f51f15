import { HEADERS, headerString } from '../headers.js';
import type { ParkingPort } from '../ports.js';
import type { Committer } from './committer.js';
import type { JobSlot } from './dispatcher.js';
import { type KeyParkingDeps, markReleasing, runRelease, stating } from './key-release.js';
import { Abandoned } from './lease.js';
import type { ResolvedWorkerOptions } from './options.js';
import type { Gate, ReleaseLedger } from './parked-key.js';
import { type ParkedKey, ParkingState } from './parking.js';
import type { PartitionTracker } from './partition-tracker.js';
import { RoundParkingPort } from './round-parking.js';
import type { TransactionRounds } from './rounds.js';
import { tpKey, WorkItem } from './work-item.js';

const noop = () => undefined;

/**
 * Strict key order through retry tiers (`retry.ordering: 'strict'`). When a job of key K goes to a
 * retry tier it becomes K's head and K is parked on its partition: later jobs of K are written, in
 * offset order, to the parking topic (parking.ts) and their offsets count as done, so the commit
 * point moves and other keys flow. The head's retry carries `strand-parks-key`; whoever ends it
 * (completed, or dead-lettered) writes a release record with K to the head's job-topic partition.
 * That record reaches K's lane in offset order, behind every job of K parked before it and ahead of
 * every later one, and runs K's parked jobs there one by one (or dead-letters them, `key-dead`,
 * with `onDeadKey: 'dead-letter'`). A parked job that fails into a tier becomes the new head; the
 * ones behind it stay parked. The release record counts as done only when the key was released or
 * parked again, so a crash mid-release resumes from the parking topic.
 */
export class KeyParking {
  readonly state: ParkingState;
  /**
   * Per ownership (tracker): job-topic offsets of jobs an earlier ownership parked that a release
   * of this one ran before the intake's job of that offset passed the gate (a key parked again
   * while releasing collects jobs above its release record). Skipped there, even once the key is free.
   */
  private readonly ranAhead = new WeakMap<PartitionTracker, Set<number>>();
  /**
   * Per `partition\0key`: the release of the key running in this worker, of whichever ownership. A
   * partition taken afresh (a kept one another writer touched) resumes its releases while the old
   * ownership's may still run a parked job: the new one waits for it, or one job runs twice at once.
   */
  private readonly releases = new Map<string, Promise<unknown>>();
  /** Per `partition\0key`: what this worker's releases of the key resolved, kept while one is cut short. */
  private readonly ledgers = new Map<string, ReleaseLedger>();

  /** Keys are parked with `retry.ordering: 'strict'`, ordered jobs and retry tiers to park behind. */
  static wanted(o: ResolvedWorkerOptions): boolean {
    return o.retry.ordering === 'strict' && o.ordering !== 'unordered' && o.retry.tiers.length > 0;
  }

  /**
   * kafkajs' `partitionsConsumedConcurrently`: as set, else 3, or 64 for a batch handler that parks
   * keys (one job per key in a batch: the intake takes every fetched partition at once, intake.ts).
   */
  static partitionsTakenAtOnce(o: ResolvedWorkerOptions): number {
    return (
      o.partitionsConsumedConcurrently ?? (o.batchHandler !== undefined && KeyParking.wanted(o) ? 64 : 3)
    );
  }

  static create(
    o: ResolvedWorkerOptions,
    port: ParkingPort | undefined,
    deps: Omit<ConstructorParameters<typeof KeyParking>[0], 'state'> & {
      running: () => boolean;
      random: () => number;
      /** A parking write was refused (fenced by a later owner): give the partition up. */
      lost: (partition: number) => void;
      /** Exactly once: parking writes are rounds of their job-topic partition (round-parking.ts). */
      rounds: TransactionRounds | undefined;
      topics: { main: string; parked: string };
      committer: () => Pick<Committer, 'commitNow'>;
    },
  ): KeyParking | undefined {
    if (!KeyParking.wanted(o)) return undefined;
    port = RoundParkingPort.within(port, deps.rounds, deps.topics, deps.assignment, deps.committer);
    if (!port) return undefined;
    const state = new ParkingState({
      port,
      group: o.groupId,
      clock: deps.clock,
      logger: deps.logger,
      running: deps.running,
      random: deps.random,
      lost: deps.lost,
    });
    return new KeyParking({ ...deps, state });
  }

  constructor(private readonly deps: KeyParkingDeps) {
    this.state = deps.state;
    const { metrics, options } = deps;
    const labels = { topic: options.topic, group: options.groupId };
    metrics.sampleOnScrape(metrics.parkedKeys, () =>
      metrics.parkedKeys.set(labels, this.state.counts().keys),
    );
    metrics.sampleOnScrape(metrics.parkedJobs, () =>
      metrics.parkedJobs.set(labels, this.state.counts().jobs),
    );
  }

  /** A job of the job topic with a key, at its turn in its lane: what happens to it. */
  gate(item: WorkItem): Gate {
    if (item.tier !== 0 || item.key === null || item.released) return 'run';
    if (item.rawHeaders?.[HEADERS.release] !== undefined) return 'release';
    const offset = Number(item.offset);
    if (this.ranAhead.get(item.tracker)?.delete(offset)) return 'handed-off';
    // Parked by an earlier ownership: it ran, or runs, from the parking topic — also once its key
    // was released meanwhile (sim seed 77842: read again behind the release that ran it).
    if (this.state.handedOff(item.partition, offset)) return 'handed-off';
    const parked = this.state.get(item.partition, item.key);
    if (!parked) return 'run';
    if (offset <= parked.last) return 'handed-off';
    return parked.closing ? 'closing' : 'follow';
  }

  /** A job gated 'closing': resolves once its key's release ended (unparked, or given up); gate it again. */
  async closed(item: WorkItem): Promise<void> {
    await this.state.get(item.partition, item.key!)?.closing;
  }

  /** `item` went to a retry tier: its key waits behind it (acknowledged before its offset is done). */
  park(item: WorkItem): Promise<void> {
    const parked = this.state.get(item.partition, item.key!);
    // After the key's state writes under way: one landing after this head's would name the old head last.
    const before = parked?.restating;
    const written = before
      ? before.then(() => this.deps.durably(item, () => this.state.park(item)))
      : this.deps.durably(item, () => this.state.park(item));
    if (parked) {
      parked.heading = { jobId: item.jobId, written };
      const clear = () => {
        if (parked.heading?.written === written) parked.heading = undefined;
      };
      written.then(clear, clear);
    }
    return written;
  }

  /** Whether `item` going to a retry tier parks its key. */
  parks(item: WorkItem): boolean {
    return item.tier === 0 && item.key !== null;
  }

  /**
   * The head of a parked key ended in this worker, which also owns the key's job-topic partition
   * (the co-partitioned assignment gives one member partition i of the job topic and of its tiers):
   * the key is released now, in its lane, instead of when the intake reaches the release record.
   * That record was written first; whichever of the two comes second finds the key released (or
   * parked behind another head) and does nothing. Not with exactly once: the record and the
   * head's own writes are visible only once the head's round commits, and the key's next jobs'
   * writes must not come before them.
   */
  releaseNow(head: WorkItem, outcome: 'completed' | 'dead'): void {
    if (this.deps.options.exactlyOnce) return;
    const p = Number(head.headers[HEADERS.originPartition] ?? head.partition);
    const key = head.key;
    if (key === null || this.state.get(p, key)?.head !== head.jobId) return;
    this.startRelease(p, key, outcome);
  }

  /**
   * Releases whose record is already behind the commit point (a release this worker or an earlier
   * owner began, then lost): resumed from the key's state as soon as the intake passed every job
   * of the key parked before. Called when a partition's parked keys are known and after each
   * fetched batch of the job topic (the intake passed more of `partition`).
   */
  passed(partition: number): void {
    for (const [key, parked] of this.state.keysOf(partition))
      if (parked.releasing && !parked.releaser) this.startRelease(partition, key, parked.releasing.outcome);
  }

  /** A job of the job topic accepted by the intake: a release record of a key whose release this worker made itself takes it over. */
  arrived(item: WorkItem): void {
    if (item.key === null || item.rawHeaders?.[HEADERS.release] === undefined) return;
    const parked = this.state.get(item.partition, item.key);
    const head = headerString(item.rawHeaders, HEADERS.release);
    if (parked?.releaser && parked.head === head) parked.handOver = head;
  }

  /** After a rebalance: releases to resume in every owned job-topic partition, once its parked keys are known. */
  resumeAll(): void {
    for (const { tracker } of this.deps.assignment.partitions())
      if (tracker.topic === this.deps.options.topic)
        void this.state.ready(tracker.partition)?.then(() => this.passed(tracker.partition));
  }

  /** The intake waits for a partition's parked keys before its first batch. */
  ready(partition: number): Promise<void> | undefined {
    return this.state.ready(partition);
  }

  /** Starts the release the key's state asks for, unless one runs. */
  private continueRelease(p: number, key: string, parked: ParkedKey): void {
    if (this.state.get(p, key) === parked && parked.releasing && !parked.releaser)
      this.startRelease(p, key, parked.releasing.outcome);
  }

  /** Adds a release of `key` to its lane, once this ownership read the job topic past its parked jobs. */
  private startRelease(p: number, key: string, outcome: 'completed' | 'dead'): void {
    const { options, assignment, clock } = this.deps;
    const owned = assignment.get(tpKey(options.topic, p));
    const parked = this.state.get(p, key);
    // Not once its release record was accepted: that one runs it (`handOver`).
    if (!owned?.verified || !parked || parked.releaser || parked.handOver === parked.head) return;
    // Not before this ownership read the job topic past every offset parked (by it or before it):
    // one read again after the release would run as a fresh job. The release record does it then.
    const top = Math.max(parked.last, this.state.loadedTop(p), parked.followers.at(-1)?.src ?? -1);
    if (!owned.tracker.passed(top)) return;
    parked.releaser = true;
    const record = {
      offset: '-1',
      key: Buffer.from(key),
      value: null,
      headers: { [HEADERS.release]: parked.head, [HEADERS.releaseOutcome]: outcome },
    };
    // Behind the jobs of its key already in the lane (they are parked first, then released); numbered
    // as accepted now: behind every job the worker holds it would start only once none is runnable,
    // and a release record of the key queued behind it would hold its partition (sim seed 43447).
    const dispatcher = this.deps.dispatcher();
    const release = new WorkItem(
      options.topic,
      p,
      record,
      0,
      owned.tracker,
      dispatcher.nextSeq(),
      clock.now(),
    );
    dispatcher.add(release);
    dispatcher.pump();
  }

  /** Handles a gated job; true when its offset may count as done. */
  async handle(item: WorkItem, slot: JobSlot, gate: Exclude<Gate, 'run' | 'closing'>): Promise<boolean> {
    if (gate === 'handed-off') return true;
    const parked = this.state.get(item.partition, item.key!);
    if (gate === 'follow') {
      if (!parked) return true;
      const written = this.deps.durably(item, () => this.state.follow(item, parked));
      parked.writes ??= new Set();
      const writes = parked.writes;
      writes.add(written);
      void written.then(
        () => writes.delete(written),
        () => writes.delete(written),
      );
      // The key's next job may be parked meanwhile; this one keeps its slot (a drain waits for it)
      // and counts as done once acknowledged.
      this.deps.dispatcher().releaseLane(item);
      await written;
      this.deps.emit('job:parked', item, parked.head);
      return true;
    }
    const head = headerString(item.rawHeaders, HEADERS.release);
    // Not parked here (released; the record sent twice or read again): a state another writer left
    // in the parking topic (a member that wrote after it lost the partition) must not park the key.
    if (!parked) {
      await this.deps.durably(item, () => this.state.unpark(item.partition, item.key!));
      return true;
    }
    // The key's next head may be being written (a released job that just went to a tier, whose
    // retry already ended): this release is for it once that write landed.
    // (A job id enqueued twice may be the head again: wait whenever a head of this id is being written.)
    const heading = parked.heading;
    if (heading && heading.jobId === head) await heading.written.catch(() => undefined);
    if (parked.head === head) return this.releaseKey(item, slot, parked, parked.head);
    // Not this key's head here. An internal release (offset -1) is simply over; a record is done
    // once the parking topic agrees (`stale`), unless the head it names became the key's head.
    const now = item.offset === '-1' ? undefined : await this.stale(item, head);
    return now ? this.releaseKey(item, slot, now, now.head) : true;
  }

  /** A release record (or an internal release) of the key's current head. */
  private async releaseKey(item: WorkItem, slot: JobSlot, parked: ParkedKey, head: string): Promise<boolean> {
    // Another release of the key runs or is queued (a resumed one, or the one this worker started
    // at once): this record counts as done once the key's state says it is being released.
    if (parked.releaser && item.offset !== '-1') {
      // The release under way goes on (it has not handed over yet: it would have ended).
      if (parked.handOver === head) parked.handOver = undefined;
      // Written even if this ownership wrote it before: the last state may be a zombie's park.
      if (parked.releasing) await this.restate(item, parked);
      else await markReleasing(this.deps, item, parked, head);
      // Unless the release it found under way ended meanwhile (it was the previous head's): then
      // this record runs the release itself — if its head is still the key's (not a new one).
      if (parked.releaser || this.state.get(item.partition, item.key!) !== parked || parked.head !== head)
        return true;
    }
    // Jobs of the key an earlier owner parked above this record (read at a takeover): one between
    // them whose hand-off that owner lost is parked again only once its turn comes, behind this
    // record. The release goes behind it in the key's lane instead (sim seed 66687).
    if (item.offset !== '-1' && parked.followers.some((f) => f.src > Number(item.offset))) {
      // A release this worker made itself handed over to this record: the one it starts goes on.
      if (parked.handOver === head) parked.handOver = undefined;
      await markReleasing(this.deps, item, parked, head);
      if (parked.releasing) this.startRelease(item.partition, item.key!, parked.releasing.outcome);
      return true;
    }
    const lane = `${item.partition}\0${item.key!}`;
    const earlier = this.releases.get(lane);
    parked.releaser = true;
    // Exactly once: a released job's outcome counts only with its tombstone's round (a staged DLQ
    // record or follow-up whose round failed never landed): nothing is known across ownerships.
    const ledger = this.deps.options.exactlyOnce ? { done: new Set<number>() } : this.ledger(lane);
    const run = (async () => {
      await earlier;
      await runRelease(this.deps, item, slot, parked, head, (src) => this.took(item.tracker, src), ledger);
    })();
    const settled = run.catch(noop);
    this.releases.set(lane, settled);
    try {
      await run;
    } finally {
      if (this.releases.get(lane) === settled) this.releases.delete(lane);
      if (ledger.done.size === 0 && !ledger.dead && this.ledgers.get(lane) === ledger)
        this.ledgers.delete(lane);
      parked.releaser = undefined;
      // The key's next head ended while this release still ran (its release record found this
      // one under way): that release starts now.
      this.continueRelease(item.partition, item.key!, parked);
    }
    return true;
  }

  /** The key's ledger (a few thousand at most: those of partitions that left for good go first). */
  private ledger(lane: string): ReleaseLedger {
    let ledger = this.ledgers.get(lane);
    if (!ledger) {
      if (this.ledgers.size >= 4096) this.ledgers.delete(this.ledgers.keys().next().value!);
      ledger = { done: new Set() };
      this.ledgers.set(lane, ledger);
    }
    return ledger;
  }

  /**
   * A release took the parked job at `src` of the job topic: skipped if the intake's job of that
   * offset has not passed the gate yet (not fetched, or fetched and waiting in its lane: seed
   * 30670). Offsets below the commit point passed it: forgotten.
   */
  private took(tracker: PartitionTracker, src: number): void {
    const point = tracker.commitPoint() ?? -1;
    if (src < point) return;
    const ahead = this.ranAhead.get(tracker) ?? new Set<number>();
    for (const o of ahead) if (o < point) ahead.delete(o);
    this.ranAhead.set(tracker, ahead.add(src));
  }

  /**
   * A release of a head this key does not wait behind here, though the parking topic may name it
   * last (a member that lost the partition parked the key after this ownership read it): the
   * owner's state is written again first, or a later owner would park the key's jobs for good
   * behind a head whose release is behind the commit point. After a head or unpark being written.
   */
  private async stale(item: WorkItem, head: string | undefined): Promise<ParkedKey | undefined> {
    const p = item.partition;
    const key = item.key!;
    for (;;) {
      const parked = this.state.get(p, key);
      if (!parked) {
        await this.deps.durably(item, () => this.state.unpark(p, key));
        return undefined;
      }
      if (parked.heading) await parked.heading.written.catch(() => undefined);
      else if (parked.closing) await parked.closing;
      // Its next head, written meanwhile, is this one: the record releases it after all.
      else if (parked.head === head) return parked;
      // The head it names is the key's next one, whose park did not land (the worker stops or the
      // partition left): not done, whoever reads the record next releases the key (sim seed 83262:
      // a restate wrote that head, the record counted as done, the key stayed parked for good).
      else if (parked.parking?.head === head) throw new Abandoned();
      else {
        await this.restate(item, parked);
        return undefined;
      }
    }
  }

  /**
   * Writes the key's state again as this ownership knows it; not once its release is unparking it
   * (the unpark waits for a restate under way, key-release.ts). Not after a new head being written
   * either: the key's state writes land in turn (parking.ts), and a head whose write keeps failing
   * must not hold the release record, and so its partition's commit point (sim seed 39285).
   */
  private async restate(item: WorkItem, parked: ParkedKey): Promise<void> {
    if (parked.closing || this.state.get(item.partition, item.key!) !== parked) return;
    // Over once a write of the key's state made from now on landed (this one, or another).
    const since = this.state.nextStateWrite(item.partition);
    const written = this.deps.durably(item, () =>
      this.state.restate(item.partition, item.key!, parked, since),
    );
    stating(parked, written);
    await written;
  }
}
