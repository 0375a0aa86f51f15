import { HEADERS, headerString } from '../headers.js';
import type { Logger } from '../observability/logger.js';
import type { FetchedRecord, OutgoingRecord } from '../ports.js';
import type { KeyStateRecord, ParkedKey } from './parked-key.js';

/** Parked jobs found while a parking partition is read: job-topic offset → where, and its key. */
export type LoadedJobs = Map<number, { at: number; key: string }>;

/**
 * The records of the parking topic (parking.ts), keyed by consumer group so that groups of one job
 * topic park their keys apart: `<group>\0k:<key>` holds a key's state, `<group>\0f:<offset>` a parked
 * job (by its job-topic offset); a tombstone frees the key, or removes the job.
 */
export class ParkingRecords {
  private readonly statePrefix: string;
  private readonly jobPrefix: string;

  constructor(
    group: string,
    private readonly logger: Logger,
  ) {
    this.statePrefix = `${group}\u0000k:`;
    this.jobPrefix = `${group}\u0000f:`;
  }

  /** Parked jobs read back (`found`), in the order of `wanted`, as the job-topic records they were. */
  static asJobs(
    found: readonly FetchedRecord[],
    wanted: readonly { at: number; src: number }[],
  ): FetchedRecord[] {
    const byAt = new Map(found.map((r) => [Number(r.offset), r]));
    return wanted.flatMap((f) => {
      const r = byAt.get(f.at);
      if (!r) return [];
      const headers = { ...r.headers };
      delete headers[HEADERS.parkedKey];
      delete headers[HEADERS.parkedBehind];
      delete headers[HEADERS.parkingWriter];
      const key = Buffer.from(headerString(r.headers, HEADERS.parkedKey) ?? '');
      return [{ offset: String(f.src), key, value: r.value, headers }];
    });
  }

  /** A key's state record; `null`: the key is free again (a tombstone). */
  state(partition: number, key: string, state: KeyStateRecord | null): OutgoingRecord {
    const value = state && Buffer.from(JSON.stringify(state));
    return { key: `${this.statePrefix}${key}`, value, headers: {}, partition };
  }

  /** A parked job's record; `null`: it left the parking topic (a tombstone). */
  job(
    partition: number,
    src: number | string,
    value: Buffer | null,
    headers: OutgoingRecord['headers'] = {},
  ): OutgoingRecord {
    return { key: `${this.jobPrefix}${src}`, value, headers, partition };
  }

  /** One record of the parking partition, read in offset order, into the state being loaded. */
  fold(
    partition: number,
    r: FetchedRecord,
    keys: Map<string, ParkedKey>,
    jobs: LoadedJobs,
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
          this.logger.error({ partition, key, offset: r.offset }, 'unreadable parked-key record skipped');
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
}
