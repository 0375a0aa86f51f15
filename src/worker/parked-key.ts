/** The parked state of a key and its jobs (strict key order, parking.ts). */

/** A parked job: where it waits in the parking topic, and its offset in the job topic. */
export interface ParkedJob {
  readonly at: number;
  readonly src: number;
}

/** A key of one job-topic partition that waits behind its head (a job in a retry tier). */
export interface ParkedKey {
  /** Job id of the head: its end (a release record in the job topic) releases the key. */
  head: string;
  /** The head's job-topic offset. */
  headOffset: number;
  /** When the key was parked (ms). */
  since: number;
  /** Parked jobs in job-topic offset order. */
  followers: ParkedJob[];
  /**
   * The highest job-topic offset this ownership handed off (head or parked job); after a read of
   * the parking partition, the head's (see `handedOff`). Read again, an offset up to it is done.
   */
  last: number;
  /** Hand-offs of parked jobs under way (a release waits for them). */
  writes?: Set<Promise<unknown>> | undefined;
  /**
   * The key's head ended and its parked jobs are being run (kept in its state record, so a new
   * owner resumes the release: the release record itself counts as done once this is written).
   * `cause`: with `onDeadKey: 'dead-letter'`, the dead job the rest is dead-lettered behind.
   */
  releasing?: { outcome: 'completed' | 'dead'; cause?: string | undefined } | undefined;
  /** A new head being written (a job of the key that went to a tier while the key was parked). */
  heading?: { jobId: string; written: Promise<void> } | undefined;
  /**
   * The state a new head's park writes, from its first try until one is acknowledged (a try that
   * failed may have landed): a restate meanwhile writes this one.
   */
  parking?: KeyStateRecord | undefined;
  /** The key's state record may say unparked (an unpark whose answer was lost): the next hand-off writes it again. */
  restate?: boolean | undefined;
  /**
   * The key's state being written again, or as being released (parked-keys.ts `restate`,
   * key-release.ts `markReleasing`): its unpark and a new head's park wait for it, so neither lands
   * before it (a write retried after the new head landed would name the old head last).
   */
  restating?: Promise<unknown> | undefined;
  /** A release of this key runs in this worker now (or is queued to). */
  releaser?: boolean | undefined;
  /**
   * The head whose release record this ownership accepted while a release this worker made itself
   * (`releaseNow`) runs: that one stops before its next parked job and the record runs the rest,
   * or the record would wait for a slot behind it — with concurrency 1, holding its partition's
   * commit point for the whole release (sim seed 55681). A copy that handed over and the next
   * ownership's resumed releases wait for the record (it is above the commit point, read again).
   */
  handOver?: string | undefined;
  /** The release ran every parked job and is unparking the key: its next job waits for that. */
  closing?: Promise<void> | undefined;
}

/**
 * What this worker's releases of one key resolved, across its ownerships of the partition. A
 * partition dropped and taken afresh (a drain past its rejoin deadline) resumes the key's release
 * from the parking topic as read then, while the old ownership's release still ends a parked job
 * whose tombstone (and dead-letter cause) it can no longer write: the new release must not run
 * that job again, nor run the rest of a key it knows is dead (sim seed 391921).
 */
export interface ReleaseLedger {
  /** Job-topic offsets of parked jobs that reached an outcome here (ran, or were dead-lettered). */
  done: Set<number>;
  /** With `onDeadKey: 'dead-letter'`: the released job dead-lettered here, in the release of `head`. */
  dead?: { cause: string; head: string } | undefined;
}

/**
 * The writes of one owned partition's key state records (parking.ts), in turn per key: each goes
 * once the key's previous one settled, and builds its record when it goes. Two sends under way at
 * once may land in either order (one failed and sent again), and the state record that lands last
 * is what the next owner reads: a release record's restate of a key must not land after the park
 * of the key's next head it was made before (sim seed 37246). Numbered as they go, so a restate
 * is over once any write of the key made after it was asked for is acknowledged (sim seed 39756).
 */
export class StateWrites {
  private readonly turns = new Map<string, Promise<void>>();
  private readonly acked = new Map<string, number>();
  private made = 0;

  /** The number the next write (of any key) gets. */
  next(): number {
    return this.made + 1;
  }

  /** Whether a write of `key` numbered `since` or later was acknowledged. */
  landedSince(key: string, since: number): boolean {
    return (this.acked.get(key) ?? 0) >= since;
  }

  /** Runs `write` in the key's turn. */
  run<T>(key: string, write: () => Promise<T>): Promise<T> {
    const turn = (this.turns.get(key) ?? Promise.resolve()).then(async () => {
      const n = ++this.made;
      const result = await write();
      this.acked.set(key, n);
      return result;
    });
    const settled = turn.then(
      () => undefined,
      () => undefined,
    );
    this.turns.set(key, settled);
    void settled.then(() => {
      if (this.turns.get(key) === settled) this.turns.delete(key);
    });
    return turn;
  }

  /** The key was unparked. */
  forget(key: string): void {
    this.acked.delete(key);
  }
}

/** What a key's state record holds. */
export type KeyStateRecord = Pick<ParkedKey, 'head' | 'headOffset' | 'since' | 'releasing'>;

/** What a key's state record holds of its parked state. */
export function stateOf({ head, headOffset, since, releasing }: KeyStateRecord): KeyStateRecord {
  return { head, headOffset, since, releasing };
}

/** One owned partition's parking state, as this ownership read and wrote it. */
export interface ParkingPartition {
  keys: Map<string, ParkedKey>;
  ready: Promise<void>;
  handed: Set<number>;
  top: number;
  /**
   * Up to where this ownership knows the parking partition holds only what it read or wrote
   * itself (its read's end, moved on by its own writes as they are acknowledged in order).
   */
  end: number;
  /** Offsets of its own writes above `end` (acknowledged out of order). */
  ours: Set<number>;
  /** This ownership's writer token (`strand-parking-writer` on what it writes). */
  token: string;
  /** This ownership's writes of key state records, in turn per key. */
  writes: StateWrites;
  /** The whole partition was read: until then its keys are partly known (nobody may act on them). */
  loaded: boolean;
  /** A write was refused (another worker took the fence): taken afresh if kept. */
  lost: boolean;
}

/** Why a parked job was dead-lettered with reason `key-dead`: the job its key waited behind died. */
export class KeyDeadError extends Error {
  constructor(
    readonly key: string,
    readonly headJobId: string,
  ) {
    super(
      `job ${headJobId} of key ${key} was dead-lettered; this job waited behind it (retry.onDeadKey: 'dead-letter')`,
    );
    this.name = 'KeyDeadError';
  }
}

/**
 * What a job-topic job does at its turn in its key's lane: run, be parked behind its key's head,
 * be skipped (handed off before: a parked job or the head, read again after a restart), or — a
 * release record — release its key.
 */
export type Gate = 'run' | 'follow' | 'handed-off' | 'release' | 'closing';
