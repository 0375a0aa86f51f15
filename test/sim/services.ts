/**
 * The other services a worker instance talks to, on its own clock (a dead instance gets no answer):
 * the schema registry behind the decoder, the idempotency store (shared by all instances, like
 * Redis), the producer that writes retry-tier, DLQ and release records, and the parking topic
 * (strict key order) that the owner of a job-topic partition reads and writes.
 */
import { DecodeError, RegistryUnavailableError } from '../../src/codec/errors.js';
import type { MemoryIdempotencyStore } from '../../src/idempotency/memory-store.js';
import {
  type BeginResult,
  type IdempotencyStore,
  StoreUnavailableError,
} from '../../src/idempotency/store.js';
import type {
  FetchedRecord,
  JobDecoder,
  OffsetCommit,
  OutgoingRecord,
  ParkingPort,
  ProducePort,
  RoundRequest,
  TopicRecords,
  TransactionPort,
} from '../../src/ports.js';
import type { ChildClock } from './clock.js';
import type { LogEntry } from './kafka-model.js';
import type { Rng } from './random.js';

/** Outages the scenario switches on and off. */
export interface Outages {
  registry: boolean;
  store: boolean;
  produce: boolean;
}

/** Schema ids the registry knows; 99 is unknown to it. */
export const KNOWN_SCHEMAS = [1, 2, 3] as const;
export const UNKNOWN_SCHEMA = 99;

export type ValueKind = 'ok' | 'bad-magic' | 'unknown-schema' | 'truncated';

/** A record value: magic byte, schema id, the job's rid, padding. */
export function encodeValue(kind: ValueKind, rid: number, schemaId: number, padding: number): Buffer {
  if (kind === 'truncated') return Buffer.from([0, 0, 1]);
  const b = Buffer.alloc(9 + padding, 0x61);
  b[0] = kind === 'bad-magic' ? 7 : 0;
  b.writeUInt32BE(kind === 'unknown-schema' ? UNKNOWN_SCHEMA : schemaId, 1);
  b.writeUInt32BE(rid, 5);
  return b;
}

function parse(value: Buffer | null): { kind: ValueKind; schemaId: number; rid: number } {
  if (!value || value.length < 9) return { kind: 'truncated', schemaId: 0, rid: -1 };
  const schemaId = value.readUInt32BE(1);
  const rid = value.readUInt32BE(5);
  if (value[0] !== 0) return { kind: 'bad-magic', schemaId, rid };
  if (schemaId === UNKNOWN_SCHEMA) return { kind: 'unknown-schema', schemaId, rid };
  return { kind: 'ok', schemaId, rid };
}

/** The decoder of one instance: its own schema cache (empty after a restart). */
export class SimDecoder implements JobDecoder {
  private readonly cache = new Set<number>();
  registryCalls = 0;

  constructor(
    private readonly clock: ChildClock,
    private readonly rng: Rng,
    private readonly outages: Outages,
    private readonly latencyMax: number,
  ) {}

  decodesLocally(value: Buffer | null): boolean {
    const p = parse(value);
    return (
      p.kind === 'truncated' || p.kind === 'bad-magic' || (p.kind === 'ok' && this.cache.has(p.schemaId))
    );
  }

  decode(value: Buffer | null): Promise<{ data: unknown }> {
    const p = parse(value);
    const byteLength = value?.length ?? 0;
    if (p.kind === 'truncated')
      return Promise.reject(new DecodeError('truncated', 'record too short', { byteLength }));
    if (p.kind === 'bad-magic')
      return Promise.reject(new DecodeError('bad-magic', 'not the Confluent wire format', { byteLength }));
    if (p.kind === 'ok' && this.cache.has(p.schemaId)) return Promise.resolve({ data: { rid: p.rid } });
    this.registryCalls++;
    return new Promise((resolve, reject) => {
      this.clock.setTimeout(
        () => {
          if (this.outages.registry)
            return reject(new RegistryUnavailableError('registry unreachable (simulated)'));
          if (p.kind === 'unknown-schema')
            return reject(
              new DecodeError('unknown-schema-id', `schema ${p.schemaId} not found`, {
                byteLength,
                schemaId: p.schemaId,
              }),
            );
          this.cache.add(p.schemaId);
          resolve({ data: { rid: p.rid } });
        },
        this.rng.int(1, this.latencyMax),
      );
    });
  }
}

/**
 * One instance's connection to the shared store: a call takes effect when made and answers after
 * a latency on the instance's clock; during an outage it changes nothing and fails.
 */
export class SimStore implements IdempotencyStore {
  constructor(
    private readonly inner: MemoryIdempotencyStore,
    private readonly clock: ChildClock,
    private readonly rng: Rng,
    private readonly outages: Outages,
    private readonly latencyMax: number,
  ) {}

  private call<T>(op: () => Promise<T>): Promise<T> {
    if (this.outages.store) {
      return new Promise((_resolve, reject) => {
        this.clock.setTimeout(
          () => reject(new StoreUnavailableError('store unreachable (simulated)')),
          this.rng.int(1, Math.max(1, this.latencyMax)),
        );
      });
    }
    const result = op();
    const latency = this.rng.int(0, this.latencyMax);
    if (latency === 0) return result;
    return new Promise((resolve, reject) => {
      this.clock.setTimeout(() => result.then(resolve, reject), latency);
    });
  }

  begin(jobId: string, owner: string, leaseMs: number): Promise<BeginResult> {
    return this.call(() => this.inner.begin(jobId, owner, leaseMs));
  }

  renew(jobId: string, owner: string, leaseMs: number): Promise<boolean> {
    return this.call(() => this.inner.renew(jobId, owner, leaseMs));
  }

  complete(jobId: string, owner: string, retainMs: number): Promise<void> {
    return this.call(() => this.inner.complete(jobId, owner, retainMs));
  }

  release(jobId: string, owner: string): Promise<void> {
    return this.call(() => this.inner.release(jobId, owner));
  }
}

/**
 * One instance's producer: writes at the acknowledgement (after a latency), so a crash before it
 * loses the send. A failed send may still have been written (the answer was lost). A record goes to
 * its `partition` when it names one (release records), else to its key's (the sim's `write`).
 */
export class SimProducer implements ProducePort {
  constructor(
    private readonly clock: ChildClock,
    private readonly rng: Rng,
    private readonly outages: Outages,
    private readonly opts: { latencyMax: number; failRate: number; ambiguousRate: number },
    private readonly alive: () => boolean,
    /**
     * Writes a record; `sentAt`: when the send that carried it was made; `acked`: the send
     * succeeds (else it fails though written).
     */
    private readonly write: (topic: string, message: OutgoingRecord, sentAt: number, acked: boolean) => void,
    private readonly trace: (text: string) => void,
  ) {}

  send(batch: readonly { topic: string; messages: readonly OutgoingRecord[] }[]): Promise<void> {
    if (!this.alive()) return Promise.reject(new Error('producer of a dead process'));
    const fail = this.outages.produce || this.rng.chance(this.opts.failRate);
    const ambiguous = fail && this.rng.chance(this.opts.ambiguousRate);
    const copy = batch.map(({ topic, messages }) => ({ topic, messages: [...messages] }));
    const sentAt = this.clock.now();
    return new Promise((resolve, reject) => {
      this.clock.setTimeout(
        () => {
          if (!fail || ambiguous)
            for (const { topic, messages } of copy)
              for (const m of messages) this.write(topic, m, sentAt, !fail);
          if (fail) {
            this.trace(`produce failed${ambiguous ? ' (but written)' : ''}`);
            reject(new Error('simulated produce failure: NOT_ENOUGH_REPLICAS'));
          } else resolve();
        },
        this.rng.int(0, this.opts.latencyMax),
      );
    });
  }
}

/**
 * One instance's access to the parking topic (strict key order), as the producer: a write lands
 * at its acknowledgement (after a latency; a crash before loses it), fails in a produce outage or
 * at the failure rate, and a failed write may have landed anyway. `scan` takes the partition's
 * end at a point between the call and the answer (the real port reads up to the high watermark it
 * fetched first) and hands over every record before it in pages, tombstones included (compaction
 * is not modelled: the readers fold them). Reads fail as writes do; a failing scan hands over half
 * of its pages first. Its own random stream, so seeds that never park keep their other draws.
 */
export class SimParkingPort implements ParkingPort {
  constructor(
    private readonly clock: ChildClock,
    private readonly rng: Rng,
    private readonly outages: Outages,
    private readonly opts: { latencyMax: number; failRate: number; ambiguousRate: number },
    private readonly alive: () => boolean,
    /** The parking partition's log as a reader sees it: records the log cleaner removed are holes. */
    private readonly log: (partition: number) => readonly (LogEntry | undefined)[],
    /**
     * Appends the records to the parking partition; returns their entries. `sentAt`: when the
     * write was made; `acked`: it succeeds (else it fails though written).
     */
    private readonly append: (
      partition: number,
      records: readonly OutgoingRecord[],
      sentAt: number,
      acked: boolean,
    ) => LogEntry[],
    private readonly trace: (text: string) => void,
    /** A write failed (written or not): the caller sends it again after its backoff. */
    private readonly failed: (partition: number, records: readonly OutgoingRecord[]) => void = () => {},
    /**
     * The writer fence of each parking partition (its transactional id's epoch, shared by every
     * instance); without it writes are not fenced (the model before fencing).
     */
    private readonly epochs?: Map<number, number>,
  ) {}

  /** The epoch this instance took per partition (`fence`), until a write of it is refused or it lets go. */
  private readonly mine = new Map<number, number>();

  /**
   * Takes the partition's transactional id (InitProducerId): bumps its epoch when it lands, so a
   * write of an earlier holder still under way (its open transaction) or sent later is refused.
   */
  fence(partition: number): Promise<void> {
    const epochs = this.epochs;
    if (!epochs) return Promise.resolve();
    if (!this.alive()) return Promise.reject(new Error('parking fence of a dead process'));
    const fail = this.failing();
    return new Promise((resolve, reject) => {
      this.clock.setTimeout(() => {
        if (!this.alive()) return reject(new Error('parking fence of a dead process'));
        if (fail) return reject(new Error('simulated fence failure: COORDINATOR_NOT_AVAILABLE'));
        const epoch = (epochs.get(partition) ?? 0) + 1;
        epochs.set(partition, epoch);
        this.mine.set(partition, epoch);
        this.trace(`fenced parking partition ${partition} (epoch ${epoch})`);
        resolve();
      }, this.latency());
    });
  }

  holds(partition: number): boolean {
    return !this.epochs || this.mine.has(partition);
  }

  release(partition: number): Promise<void> {
    this.mine.delete(partition);
    return Promise.resolve();
  }

  private static fetched(e: LogEntry): FetchedRecord {
    return { offset: String(e.offset), key: e.key, value: e.value, headers: e.headers };
  }

  private latency(): number {
    return this.rng.int(0, this.opts.latencyMax);
  }

  private failing(): boolean {
    return this.outages.produce || this.rng.chance(this.opts.failRate);
  }

  scan(
    partition: number,
    from: number,
    onPage: (records: readonly FetchedRecord[], next: number) => void,
  ): Promise<number> {
    if (!this.alive()) return Promise.reject(new Error('parking read of a dead process'));
    const fail = this.failing();
    return new Promise((resolve, reject) => {
      this.clock.setTimeout(() => {
        const end = Math.max(from, this.log(partition).length);
        this.clock.setTimeout(() => {
          const records = this.log(partition)
            .slice(from, end)
            .flatMap((e) => (e ? [SimParkingPort.fetched(e)] : []));
          // Pages of 7 records; a read that fails hands over half of its pages first (the reader
          // resumes after them). A page reaches past any gap the log cleaner left after it.
          const pages = Math.ceil(records.length / 7);
          const next = (i: number) => {
            const after = records[i * 7 + 7];
            return after ? Number(after.offset) : end;
          };
          try {
            for (let i = 0; i < (fail ? Math.floor(pages / 2) : pages); i++)
              onPage(records.slice(i * 7, i * 7 + 7), next(i));
          } catch (error) {
            return reject(error);
          }
          if (fail) {
            this.trace(`parking read of partition ${partition} from ${from} failed`);
            return reject(new Error('simulated parking read failure: NOT_LEADER_OR_FOLLOWER'));
          }
          this.trace(`parking read of partition ${partition} from ${from}: ${records.length} records`);
          resolve(end);
        }, this.latency());
      }, this.latency());
    });
  }

  read(partition: number, offsets: readonly number[]): Promise<FetchedRecord[]> {
    if (!this.alive()) return Promise.reject(new Error('parking read of a dead process'));
    const fail = this.failing();
    const wanted = [...new Set(offsets)].sort((a, b) => a - b);
    return new Promise((resolve, reject) => {
      this.clock.setTimeout(() => {
        if (fail) {
          this.trace(`parking read of ${partition}@[${wanted.join(',')}] failed`);
          return reject(new Error('simulated parking read failure: NOT_LEADER_OR_FOLLOWER'));
        }
        const log = this.log(partition);
        resolve(
          wanted.flatMap((o) => {
            const e = log[o];
            return e ? [SimParkingPort.fetched(e)] : [];
          }),
        );
      }, this.latency());
    });
  }

  endOffset(partition: number): Promise<number> {
    if (!this.alive()) return Promise.reject(new Error('parking read of a dead process'));
    const fail = this.failing();
    return new Promise((resolve, reject) => {
      this.clock.setTimeout(() => {
        if (fail) return reject(new Error('simulated parking read failure: NOT_LEADER_OR_FOLLOWER'));
        resolve(this.log(partition).length);
      }, this.latency());
    });
  }

  write(partition: number, records: readonly OutgoingRecord[]): Promise<number[]> {
    if (!this.alive()) return Promise.reject(new Error('parking write of a dead process'));
    const fail = this.failing();
    const ambiguous = fail && this.rng.chance(this.opts.ambiguousRate);
    const copy = [...records];
    const sentAt = this.clock.now();
    const epoch = this.mine.get(partition);
    if (this.epochs && epoch === undefined)
      return Promise.reject(new Error(`parking partition ${partition} not held (fenced or not taken)`));
    return new Promise((resolve, reject) => {
      this.clock.setTimeout(() => {
        if (this.epochs && this.epochs.get(partition) !== epoch) {
          // Its transaction aborted by a later fence, or refused: nothing of it lands.
          if (this.mine.get(partition) === epoch) this.mine.delete(partition);
          this.trace(`parking write to ${partition} refused: PRODUCER_FENCED (epoch ${epoch})`);
          this.failed(partition, copy);
          return reject(Object.assign(new Error('producer fenced'), { type: 'PRODUCER_FENCED' }));
        }
        const entries = !fail || ambiguous ? this.append(partition, copy, sentAt, !fail) : [];
        if (fail) {
          this.trace(`parking write failed${ambiguous ? ' (but written)' : ''}`);
          this.failed(partition, copy);
          reject(new Error('simulated parking write failure: NOT_ENOUGH_REPLICAS'));
        } else resolve(entries.map((e) => e.offset));
      }, this.latency());
    });
  }
}

/**
 * One instance's exactly-once rounds (`exactlyOnce`): a transactional id per input partition with
 * an epoch kept by the model (`epochs`, shared by every instance); `fence` bumps it, a round whose
 * epoch is no longer the partition's is refused (PRODUCER_FENCED), and a round that is accepted
 * lands whole — its records and its offset — in one step after a latency (`commit`), so nothing of
 * a refused round is ever visible. A crash before the answer loses the round.
 */
export class SimTransactionPort implements TransactionPort {
  private readonly mine = new Map<string, number>();

  constructor(
    private readonly clock: ChildClock,
    private readonly rng: Rng,
    private readonly latencyMax: number,
    private readonly alive: () => boolean,
    private readonly epochs: Map<string, number>,
    /** Lands a round whole; returns the offsets its records got (-1: a topic the model does not place). */
    private readonly commit: (
      tp: string,
      records: readonly TopicRecords[],
      offset: OffsetCommit | undefined,
    ) => number[],
    private readonly trace: (text: string) => void,
    /** The new owner fenced `tp`: it reads the committed offset (and its map) from now. */
    private readonly fenced: (tp: string) => void = () => undefined,
  ) {}

  private later<T>(step: () => T): Promise<T> {
    return new Promise((resolve, reject) => {
      this.clock.setTimeout(
        () => {
          if (!this.alive()) return reject(new Error('transaction of a dead process'));
          try {
            resolve(step());
          } catch (error) {
            reject(error);
          }
        },
        this.rng.int(0, this.latencyMax),
      );
    });
  }

  fence(topic: string, partition: number): Promise<void> {
    const tp = `${topic}:${partition}`;
    return this.later(() => {
      const epoch = (this.epochs.get(tp) ?? 0) + 1;
      this.epochs.set(tp, epoch);
      this.mine.set(tp, epoch);
      this.trace(`fenced ${tp} (epoch ${epoch})`);
      this.fenced(tp);
    });
  }

  commitRound(round: RoundRequest): Promise<number[]> {
    const tp = `${round.topic}:${round.partition}`;
    const epoch = this.mine.get(tp);
    // One partition's transactions run one after another, as on its one transactional producer.
    const before = this.serial.get(tp) ?? Promise.resolve();
    const run = before.then(() =>
      this.later(() => {
        if (epoch === undefined || this.epochs.get(tp) !== epoch) {
          this.trace(`round ${tp}@${round.offset?.offset ?? '-'} refused: PRODUCER_FENCED`);
          throw Object.assign(new Error('producer fenced'), { type: 'PRODUCER_FENCED' });
        }
        return this.commit(tp, round.records, round.offset);
      }),
    );
    const tail = run.then(
      () => undefined,
      () => undefined,
    );
    this.serial.set(tp, tail);
    void tail.then(() => {
      if (this.serial.get(tp) === tail) this.serial.delete(tp);
    });
    return run;
  }

  private readonly serial = new Map<string, Promise<void>>();

  release(topic: string, partition: number): Promise<void> {
    this.mine.delete(`${topic}:${partition}`);
    return Promise.resolve();
  }

  stop(): Promise<void> {
    this.mine.clear();
    return Promise.resolve();
  }
}
