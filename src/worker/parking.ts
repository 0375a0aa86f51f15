import { mergeHeaders } from '../failure/router.js';
import { HEADERS, headerString } from '../headers.js';
import type { Logger } from '../observability/logger.js';
import type { FetchedRecord, OutgoingRecord, ParkingPort } from '../ports.js';
import { retryWithBackoff } from '../timing/backoff.js';
import { type Clock, sleep } from '../timing/clock.js';
import type { KeyStateRecord, ParkedJob, ParkedKey, ParkingPartition } from './parked-key.js';
import type { WorkItem } from './work-item.js';

export type { ParkedJob, ParkedKey };

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
    },
  ) {
    // Record keys in the parking topic: a key's state, a parked job (by its job-topic offset).
    this.statePrefix = `${deps.group}\u0000k:`;
    this.jobPrefix = `${deps.group}\u0000f:`;
  }

  private readonly statePrefix: string;
  private readonly jobPrefix: string;
  /** Owned partitions whose parking partition did not answer the last time it was asked. */
  private readonly unreadable = new Set<number>();

  /** Parked keys and parked jobs over the owned partitions (metrics). */
  counts(): { keys: number; jobs: number } {
    let keys = 0;
    let jobs = 0;
    for (const part of this.parts.values()) {
      keys += part.keys.size;
      for (const k of part.keys.values()) jobs += k.followers.length;
    }
    return { keys, jobs };
  }

  /** This worker took job-topic partition `partition`: its parked keys are read (again). */
  take(partition: number): void {
    this.unreadable.delete(partition);
    const keys = new Map<string, ParkedKey>();
    const token = Math.floor(this.deps.random() * 2 ** 48).toString(36);
    const part = {
      ...{ keys, ready: Promise.resolve(), handed: new Set<number>(), top: -1, end: -1, token },
      ours: new Set<number>(),
      loaded: false,
    };
    this.parts.set(partition, part);
    part.ready = this.load(partition, keys, part);
  }

  /** The partition left: its state is read again by whoever takes it. */
  drop(partition: number): void {
    this.parts.delete(partition);
    this.unreadable.delete(partition);
  }

  /** Owned partitions whose parking partition cannot be read now (their jobs wait meanwhile). */
  stalled(): number[] {
    return [...this.unreadable];
  }

  /**
   * A partition kept across a rebalance is still this ownership's only if nobody else wrote its
   * parking partition meanwhile (a member that owned it for a generation this worker missed):
   * otherwise it is taken afresh, and its parked keys read again.
   */
  async unchanged(partition: number): Promise<boolean> {
    const part = this.parts.get(partition);
    if (!part) return false;
    await part.ready;
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
   * a tombstone, was in the parking partition when it was read). Only these, and offsets at or
   * below a key's head, are skipped as handed off when read again: with hand-offs under way at
   * once, a crash may lose the write of an earlier job while a later one landed.
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
  private async load(
    partition: number,
    keys: Map<string, ParkedKey>,
    part: {
      handed: Set<number>;
      top: number;
      end: number;
      token: string;
      ours: Set<number>;
      loaded: boolean;
    },
  ): Promise<void> {
    const { logger } = this.deps;
    const jobs = new Map<number, { at: number; key: string }>();
    let at = 0;
    const fold = (records: readonly FetchedRecord[], next: number) => {
      if (this.parts.get(partition)?.keys !== keys) throw new Error('gone');
      for (const r of records) this.fold(partition, r, keys, jobs, part);
      at = next;
    };
    part.end =
      (await this.untilAnswered(partition, keys, () => this.deps.port.scan(partition, at, fold))) ?? -1;
    let orphans = 0;
    for (const [src, job] of [...jobs].sort((a, b) => a[0] - b[0])) {
      const k = keys.get(job.key);
      if (!k) {
        orphans++;
        continue;
      }
      k.followers.push({ at: job.at, src });
    }
    if (orphans > 0) logger.warn({ partition, orphans }, 'parked jobs without a parked key were left alone');
    part.loaded = true;
    if (keys.size > 0) logger.info({ partition, keys: keys.size }, 'parked keys taken over');
  }

  /** One record of the parking partition, read in offset order, into the state being loaded. */
  private fold(
    partition: number,
    r: FetchedRecord,
    keys: Map<string, ParkedKey>,
    jobs: Map<number, { at: number; key: string }>,
    part: { handed: Set<number>; top: number },
  ): void {
    const id = r.key?.toString('utf8') ?? '';
    if (id.startsWith(this.statePrefix)) {
      const key = id.slice(this.statePrefix.length);
      if (r.value === null) keys.delete(key);
      else {
        let s: KeyStateRecord;
        try {
          s = JSON.parse(r.value.toString('utf8')) as typeof s;
        } catch {
          // Not written by Strand: the key keeps the state it had; a read that retried forever
          // would stop the whole partition instead.
          this.deps.logger.error(
            { partition, key, offset: r.offset },
            'unreadable parked-key record skipped',
          );
          return;
        }
        keys.set(key, { ...s, followers: [], last: s.headOffset });
      }
    } else if (id.startsWith(this.jobPrefix)) {
      const src = Number(id.slice(this.jobPrefix.length));
      part.handed.add(src);
      part.top = Math.max(part.top, src);
      if (r.value === null) jobs.delete(src);
      else jobs.set(src, { at: Number(r.offset), key: headerString(r.headers, HEADERS.parkedKey) ?? '' });
    }
  }

  private async write(partition: number, records: OutgoingRecord[]): Promise<number[]> {
    const part = this.parts.get(partition);
    const token = part?.token ?? '';
    const offsets = await this.deps.port.write(
      partition,
      records.map((r) => ({ ...r, headers: { ...r.headers, [HEADERS.parkingWriter]: token } })),
    );
    if (part && part.token === token) {
      for (const o of offsets) if (o >= part.end) part.ours.add(o);
      while (part.ours.delete(part.end)) part.end++;
    }
    return offsets;
  }

  /**
   * `item` (a job-topic job, or a parked job that ran again) went to a retry tier: its key waits
   * behind it. A parked job that becomes the head leaves the parked jobs behind it parked.
   */
  async park(item: WorkItem): Promise<void> {
    const key = item.key!;
    const offset = Number(item.offset);
    const part = this.parts.get(item.partition);
    if (!part) throw new Error(`partition ${item.partition} is not owned`);
    const known = part.keys.get(key);
    const since = known?.since ?? this.deps.clock.now();
    const state: KeyStateRecord = { head: item.jobId, headOffset: offset, since };
    const records: OutgoingRecord[] = [];
    const wasParked = known?.followers[0]?.src === offset;
    if (wasParked)
      records.push({
        key: `${this.jobPrefix}${offset}`,
        value: null,
        headers: {},
        partition: item.partition,
      });
    records.push(this.stateRecord(item.partition, key, state));
    await this.write(item.partition, records);
    if (!known) {
      part.keys.set(key, { ...state, followers: [], last: offset });
      return;
    }
    // In place: jobs of the key being parked meanwhile (a release frees the key's lane) go into
    // the same list.
    if (wasParked) known.followers.shift();
    Object.assign(known, state, { releasing: undefined, last: Math.max(known.last, offset) });
  }

  private stateRecord(partition: number, key: string, state: KeyStateRecord): OutgoingRecord {
    return {
      key: `${this.statePrefix}${key}`,
      value: Buffer.from(JSON.stringify(state)),
      headers: {},
      partition,
    };
  }

  /**
   * The key's head ended: its release begins (or its dead-letter cause changed). Kept in the key's
   * state record, so whoever owns the partition next resumes the release.
   */
  async releasing(
    partition: number,
    key: string,
    parked: ParkedKey,
    info: ParkedKey['releasing'],
  ): Promise<void> {
    const { head, headOffset, since } = parked;
    await this.write(partition, [
      this.stateRecord(partition, key, { head, headOffset, since, releasing: info }),
    ]);
    parked.releasing = info;
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
  async follow(item: WorkItem, parked: ParkedKey): Promise<void> {
    const src = Number(item.offset);
    parked.last = Math.max(parked.last, src);
    const headers = mergeHeaders(item.rawHeaders, {
      [HEADERS.parkedKey]: item.key!,
      [HEADERS.parkedBehind]: parked.head,
    });
    const restate = parked.restate === true;
    const { head, headOffset, since, releasing } = parked;
    const written = await this.write(item.partition, [
      ...(restate
        ? [this.stateRecord(item.partition, item.key!, { head, headOffset, since, releasing })]
        : []),
      { key: `${this.jobPrefix}${item.offset}`, value: item.value, headers, partition: item.partition },
    ]);
    if (restate) parked.restate = false;
    const at = written.at(-1);
    const list = parked.followers;
    let i = list.length;
    while (i > 0 && list[i - 1]!.src > src) i--;
    if (list[i - 1]?.src === src) list[i - 1] = { at: at!, src };
    else list.splice(i, 0, { at: at!, src });
  }

  /** Reads parked jobs back (up to `max`, from the first), in order, as the job-topic records they were. */
  async read(partition: number, parked: ParkedKey, max = 500): Promise<FetchedRecord[]> {
    const wanted = parked.followers.slice(0, max);
    const found = await this.deps.port.read(
      partition,
      wanted.map((f) => f.at),
    );
    const byAt = new Map(found.map((r) => [Number(r.offset), r]));
    return wanted.flatMap((f) => {
      const r = byAt.get(f.at);
      if (!r) return [];
      const headers = { ...r.headers };
      delete headers[HEADERS.parkedKey];
      delete headers[HEADERS.parkedBehind];
      delete headers[HEADERS.parkingWriter];
      return [
        {
          offset: String(f.src),
          key: Buffer.from(headerString(r.headers, HEADERS.parkedKey) ?? ''),
          value: r.value,
          headers,
        },
      ];
    });
  }

  /**
   * A parked job ran (or was dead-lettered): it leaves the key's list now, and the returned send
   * removes it from the parking topic.
   */
  ran(partition: number, parked: ParkedKey, src: number): () => Promise<void> {
    const i = parked.followers.findIndex((f) => f.src === src);
    if (i >= 0) parked.followers.splice(i, 1);
    return async () => {
      await this.write(partition, [{ key: `${this.jobPrefix}${src}`, value: null, headers: {}, partition }]);
    };
  }

  /** Every parked job of the key ran: the key is free again. */
  async unpark(partition: number, key: string): Promise<void> {
    await this.write(partition, [{ key: `${this.statePrefix}${key}`, value: null, headers: {}, partition }]);
    this.parts.get(partition)?.keys.delete(key);
  }
}
