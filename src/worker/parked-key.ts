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
  /** The key's state record may say unparked (an unpark whose answer was lost): the next hand-off writes it again. */
  restate?: boolean | undefined;
  /** A release of this key runs in this worker now (or is queued to). */
  releaser?: boolean | undefined;
  /** The release ran every parked job and is unparking the key: its next job waits for that. */
  closing?: Promise<void> | undefined;
}

/** What a key's state record holds. */
export type KeyStateRecord = Pick<ParkedKey, 'head' | 'headOffset' | 'since' | 'releasing'>;

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
  /** The whole partition was read: until then its keys are partly known (nobody may act on them). */
  loaded: boolean;
}
