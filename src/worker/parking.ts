import { mergeHeaders } from '../failure/router.js';
import { HEADERS, headerString } from '../headers.js';
import type { Logger } from '../observability/logger.js';
import type { FetchedRecord, OutgoingRecord, ParkingPort } from '../ports.js';
import { retryWithBackoff } from '../timing/backoff.js';
import { type Clock, sleep } from '../timing/clock.js';
import type { KeyStateRecord, ParkedJob, ParkedKey, ParkingPartition } from './parked-key.js';
import { StateWrites, stateOf } from './parked-key.js';
import { type LoadedJobs, ParkingRecords } from './parking-records.js';
import { TransactionRounds } from './rounds.js';
import type { WorkItem } from './work-item.js';

export type { ParkedJob, ParkedKey };

type Dead = { src: number; job: WorkItem };

/**
 * Which keys of each owned job-topic partition are parked (strict key order), kept in the
 * compacted parking topic `<topic>.parked` (same partition as the job topic):
 *
 * - `<group>\0k:<key>` → `{ head, headOffset, since }`: the key waits behind `head`; a tombstone
 *   unparks it.
 * - `<group>\0f:<offset>` → the parked job (value and headers as consumed, plus `strand-parked-key` and
 *   `strand-parked-behind`); a tombstone once it ran (or was dead-lettered, or became the head).
 *
 * Record keys start with the consumer group: groups of one job topic park their keys apart.
 * The owner of a partition reads its parking partition when it takes it (the intake waits for
 * that), and writes it — always before the job-topic offset concerned counts as done, so a crash
 * loses no parked job and no parked key. Payloads stay in Kafka; memory holds offsets only.
 */
export class ParkingState {
  private readonly parts = new Map<number, ParkingPartition>();

  constructor(
    private readonly deps: {
      port: ParkingPort;
      group: string;
      clock: Clock;
      logger: Logger;
      /** False once the worker stops: a load that keeps failing gives up. */
      running: () => boolean;
      random: () => number;
      /** A write was refused: another worker took the partition's fence (the worker rejoins). */
      lost?: (partition: number) => void;
    },
  ) {
    this.records = new ParkingRecords(deps.group, deps.logger);
  }

  private readonly records: ParkingRecords;
  /** Owned partitions whose parking partition did not answer the last time it was asked. */
  private readonly unreadable = new Set<number>();

  /** Parked keys and parked jobs over the owned partitions (metrics). */
  counts(): { keys: number; jobs: number } {
    const keys = [...this.parts.values()].flatMap((part) => [...part.keys.values()]);
    return { keys: keys.length, jobs: keys.reduce((n, k) => n + k.followers.length, 0) };
  }

  /** This worker took job-topic partition `partition`: its parked keys are read (again). */
  take(partition: number): void {
    this.unreadable.delete(partition);
    const keys = new Map<string, ParkedKey>();
    const token = Math.floor(this.deps.random() * 2 ** 48).toString(36);
    const part = {
      ...{ keys, ready: Promise.resolve(), handed: new Set<number>(), top: -1, end: -1, token },
      ...{ ours: new Set<number>(), writes: new StateWrites() },
      ...{ loaded: false, lost: false },
    };
    this.parts.set(partition, part);
    part.ready = this.load(partition, keys, part);
  }

  /** The partition left: its state is read again by whoever takes it. */
  drop(partition: number): void {
    this.parts.delete(partition);
    this.unreadable.delete(partition);
    void this.deps.port.release?.(partition).catch(() => undefined);
  }

  /** Takes the partition's writer fence (ParkingPort `fence`) until it answers; false: gone. */
  private async fence(partition: number, keys: Map<string, ParkedKey>): Promise<boolean> {
    const { port } = this.deps;
    if (!port.fence) return true;
    return (
      (await this.untilAnswered(partition, keys, () => port.fence!(partition).then(() => true))) ?? false
    );
  }

  /** Owned partitions whose parking partition cannot be read now (their jobs wait meanwhile). */
  stalled(): number[] {
    return [...this.unreadable];
  }

  /**
   * A partition kept across a rebalance is still this ownership's only if nobody else wrote its
   * parking partition meanwhile (a member that owned it for a generation this worker missed, not
   * one that stayed in the group: sim seed 461971): else it is taken afresh, its keys read again.
   */
  async unchanged(partition: number, continuous = false): Promise<boolean> {
    const part = this.parts.get(partition);
    if (!part) return false;
    await part.ready;
    if (continuous && part.loaded && !part.lost) return true;
    // Fenced again: a member that took it in a generation this worker missed writes no more.
    if (part.lost || !(await this.fence(partition, part.keys)) || part.lost) return false;
    const end = await this.untilAnswered(partition, part.keys, () => this.deps.port.endOffset(partition));
    if (end === undefined || end < part.end) return false;
    if (end === part.end) return true;
    // Records past what this ownership knows: its own writes (answers lost, or acknowledged out of
    // order), or another writer's — a member that owned it meanwhile.
    const since = Array.from({ length: end - part.end }, (_, i) => part.end + i);
    const records = await this.untilAnswered(partition, part.keys, () =>
      this.deps.port.read(partition, since),
    );
    if (!records?.every((r) => headerString(r.headers, HEADERS.parkingWriter) === part.token)) return false;
    part.end = end;
    for (const o of part.ours) if (o < end) part.ours.delete(o);
    return true;
  }

  /**
   * Asks the parking topic until it answers, while the worker runs and owns the partition (else
   * undefined). Meanwhile the partition counts as stalled (`stalled()`: /readyz says not ready).
   */
  private async untilAnswered<T>(
    partition: number,
    keys: Map<string, ParkedKey>,
    ask: () => Promise<T>,
  ): Promise<T | undefined> {
    const { logger, clock } = this.deps;
    // Stopped, or the partition left: whoever takes it reads it.
    const current = () => this.deps.running() && this.parts.get(partition)?.keys === keys;
    try {
      return await retryWithBackoff('produce', ask, {
        onError: (error) => {
          if (!current()) throw error;
          this.unreadable.add(partition);
          logger.warn({ err: error, partition }, 'could not read the parking topic; the partition waits');
        },
        wait: async (ms) => {
          await sleep(clock, ms);
          if (!current()) throw new Error('gone');
        },
        random: this.deps.random,
      });
    } catch {
      return undefined;
    } finally {
      if (this.parts.get(partition)?.keys === keys) this.unreadable.delete(partition);
    }
  }

  /** Resolves once the partition's parked keys are known. */
  ready(partition: number): Promise<void> | undefined {
    return this.parts.get(partition)?.ready;
  }

  /** A key's parked state; none while the partition's parked keys are still being read (partly known). */
  get(partition: number, key: string): ParkedKey | undefined {
    const part = this.parts.get(partition);
    return part?.loaded ? part.keys.get(key) : undefined;
  }

  /**
   * Whether `offset` of the job topic was parked by an earlier ownership (its `f:` record, live or
   * a tombstone, was in the parking partition when it was read; not a live one whose key was not
   * parked: nothing releases it), parked now or not. Only these, and offsets at or below a key's
   * head, are skipped as handed off when read again: with hand-offs under way at once, a crash may
   * lose the write of an earlier job while a later one landed.
   */
  handedOff(partition: number, offset: number): boolean {
    return this.parts.get(partition)?.handed.has(offset) ?? false;
  }

  /** The highest job-topic offset an earlier ownership parked (-1: none). */
  loadedTop(partition: number): number {
    return this.parts.get(partition)?.top ?? -1;
  }

  /**
   * Reads the parking partition page by page and folds each page into the key states as it
   * arrives: memory holds one page and the state (parked keys, offsets of parked jobs), however
   * many records the partition has. A read that fails resumes after the last page folded.
   */
  private async load(partition: number, keys: Map<string, ParkedKey>, part: ParkingPartition): Promise<void> {
    const { logger } = this.deps;
    const jobs: LoadedJobs = new Map();
    let at = 0;
    // Fenced before it is read: no write of an earlier holder (a member out of the group that has
    // not noticed) lands after the read.
    if (!(await this.fence(partition, keys))) return;
    const fold = (records: readonly FetchedRecord[], next: number) => {
      if (this.parts.get(partition)?.keys !== keys) throw new Error('gone');
      for (const r of records) this.records.fold(partition, r, keys, jobs, part);
      at = next;
    };
    part.end =
      (await this.untilAnswered(partition, keys, () => this.deps.port.scan(partition, at, fold))) ?? -1;
    let orphans = 0;
    for (const [src, job] of [...jobs].sort((a, b) => a[0] - b[0])) {
      const k = keys.get(job.key);
      if (!k) {
        // Nothing releases it: its job runs when read again (not skipped as handed off).
        part.handed.delete(src);
        orphans++;
        continue;
      }
      k.followers.push({ at: job.at, src });
    }
    if (orphans > 0)
      logger.warn(
        { partition, orphans },
        'parked jobs without a parked key were left alone (each runs if read again)',
      );
    part.loaded = true;
    if (keys.size > 0) logger.info({ partition, keys: keys.size }, 'parked keys taken over');
  }

  /** `carrier`: a job whose writes (exactly once) go with these records, atomically. */
  private async write(partition: number, records: OutgoingRecord[], carrier?: WorkItem) {
    const part = this.parts.get(partition);
    const token = part?.token ?? '';
    const { port } = this.deps;
    const offsets = await port
      .write(
        partition,
        records.map((r) => ({ ...r, headers: { ...r.headers, [HEADERS.parkingWriter]: token } })),
        carrier?.writes,
      )
      .catch((error: unknown) => {
        // Refused: a later owner took the fence. This ownership's writes stay refused; it rejoins.
        const current = part?.loaded && !part.lost && this.parts.get(partition) === part;
        if (current && port.holds?.(partition) === false) {
          part.lost = true;
          this.deps.lost?.(partition);
        }
        throw error;
      });
    if (part && part.token === token) {
      for (const o of offsets) if (o >= part.end) part.ours.add(o);
      while (part.ours.delete(part.end)) part.end++;
    }
    if (carrier) TransactionRounds.published(carrier);
    return offsets;
  }

  /**
   * `item` (a job-topic job, or a parked job that ran again) went to a retry tier: its key waits
   * behind it. A parked job that becomes the head leaves the parked jobs behind it parked.
   */
  park(item: WorkItem): Promise<void> {
    const part = this.parts.get(item.partition);
    if (!part) return Promise.reject(new Error(`partition ${item.partition} is not owned`));
    return part.writes.run(item.key!, () => this.parkNow(item, part));
  }

  private async parkNow(item: WorkItem, part: ParkingPartition): Promise<void> {
    const key = item.key!;
    const offset = Number(item.offset);
    const known = part.keys.get(key);
    const since = known?.since ?? this.deps.clock.now();
    const state: KeyStateRecord = { head: item.jobId, headOffset: offset, since };
    if (known) known.parking = state;
    const records: OutgoingRecord[] = [];
    const wasParked = known?.followers[0]?.src === offset;
    if (wasParked) records.push(this.records.job(item.partition, offset, null));
    records.push(this.records.state(item.partition, key, state));
    await this.write(item.partition, records, item); // exactly once: its tier record with it
    if (!known) {
      part.keys.set(key, { ...state, followers: [], last: offset });
      return;
    }
    // In place: jobs of the key being parked meanwhile (a release frees the key's lane) go into
    // the same list.
    if (wasParked) known.followers.shift();
    known.parking = undefined;
    Object.assign(known, state, { releasing: undefined, last: Math.max(known.last, offset) });
  }

  /**
   * The key's head ended: its release begins (or its dead-letter cause changed). Kept in the key's
   * state record, so whoever owns the partition next resumes the release.
   */
  releasing(partition: number, key: string, parked: ParkedKey, info: ParkedKey['releasing'], dead?: Dead) {
    // A released job that just died: its tombstone (and its DLQ record, exactly once) go with it.
    return this.stateWrite(partition, key, async () => {
      const state = this.records.state(partition, key, stateOf({ ...parked, releasing: info }));
      const tombstone = dead ? [this.records.job(partition, dead.src, null)] : [];
      await this.write(partition, [state, ...tombstone], dead?.job);
      parked.releasing = info;
    });
  }

  /**
   * Writes the key's state as this ownership knows it when the write goes (the last one may be a
   * zombie's, parked-keys.ts `stale`); nothing once the key is no longer parked as `parked`.
   */
  restate(
    partition: number,
    key: string,
    parked: ParkedKey,
    since = this.nextStateWrite(partition),
  ): Promise<void> {
    return this.stateWrite(partition, key, async () => {
      const part = this.parts.get(partition);
      // Not again once a write of the key made since it was asked for landed (its own, or another).
      if (part?.keys.get(key) !== parked || part.writes.landedSince(key, since)) return;
      // A new head whose park failed and goes again is the key's state now: written after it, the
      // old head would be named last (sim seed 28813: the old head's `releasing`, then a takeover).
      await this.writeState(partition, key, parked.parking ?? parked);
    });
  }

  /** The number the partition's next key state write gets (a restate asked for now is over once one from it on landed). */
  nextStateWrite(partition: number): number {
    return this.parts.get(partition)?.writes.next() ?? 0;
  }

  private async writeState(partition: number, key: string, parked: KeyStateRecord): Promise<void> {
    await this.write(partition, [this.records.state(partition, key, stateOf(parked))]);
  }

  /** A write of the key's state record, in its turn (`StateWrites`) while the partition is owned. */
  private stateWrite(partition: number, key: string, write: () => Promise<void>): Promise<void> {
    const part = this.parts.get(partition);
    return part ? part.writes.run(key, write) : write();
  }

  /** The parked keys of a partition. */
  keysOf(partition: number): ReadonlyMap<string, ParkedKey> {
    const part = this.parts.get(partition);
    return part?.loaded ? part.keys : new Map();
  }

  /**
   * Parks `item` behind its key's head; resolves once the parking topic acknowledged it. Several
   * may be under way at once: parked jobs are kept in job-topic offset order, whatever order their
   * writes land in.
   */
  follow(item: WorkItem, parked: ParkedKey): Promise<void> {
    parked.last = Math.max(parked.last, Number(item.offset));
    // With the key's state again (`restate`): in its turn, as every write of it.
    if (!parked.restate) return this.followNow(item, parked, false);
    return this.stateWrite(item.partition, item.key!, () => this.followNow(item, parked, true));
  }

  private async followNow(item: WorkItem, parked: ParkedKey, inTurn: boolean): Promise<void> {
    const src = Number(item.offset);
    const headers = mergeHeaders(item.rawHeaders, {
      [HEADERS.parkedKey]: item.key!,
      [HEADERS.parkedBehind]: parked.head,
    });
    const restate = inTurn && parked.restate === true;
    const written = await this.write(item.partition, [
      ...(restate ? [this.records.state(item.partition, item.key!, stateOf(parked))] : []),
      this.records.job(item.partition, item.offset, item.value, headers),
    ]);
    if (restate) parked.restate = false;
    const at = written.at(-1);
    const list = parked.followers;
    let i = list.length;
    while (i > 0 && list[i - 1]!.src > src) i--;
    if (list[i - 1]?.src === src) list[i - 1] = { at: at!, src };
    else list.splice(i, 0, { at: at!, src });
  }

  /** Reads parked jobs back, in order, as the job-topic records they were. */
  async read(partition: number, wanted: readonly ParkedJob[]): Promise<FetchedRecord[]> {
    const found = await this.deps.port.read(
      partition,
      wanted.map((f) => f.at),
    );
    return ParkingRecords.asJobs(found, wanted);
  }

  /**
   * A parked job ran (or was dead-lettered): it leaves the key's list now, and the returned send
   * removes it from the parking topic.
   */
  ran(partition: number, parked: ParkedKey, src: number, job?: WorkItem): () => Promise<void> {
    const i = parked.followers.findIndex((f) => f.src === src);
    if (i >= 0) parked.followers.splice(i, 1);
    // Exactly once: the job's writes (follow-ups, DLQ record) go with its tombstone.
    return () => this.write(partition, [this.records.job(partition, src, null)], job).then(() => {});
  }

  /** Every parked job of the key ran: the key is free again. */
  unpark(partition: number, key: string): Promise<void> {
    return this.stateWrite(partition, key, async () => {
      await this.write(partition, [this.records.state(partition, key, null)]);
      const part = this.parts.get(partition);
      part?.keys.delete(key);
      part?.writes.forget(key);
    });
  }
}
