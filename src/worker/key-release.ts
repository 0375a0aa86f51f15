import type { OutcomeRouter } from '../failure/router.js';
import { HEADERS, headerString } from '../headers.js';
import type { Logger } from '../observability/logger.js';
import type { OutcomeCounts, QueueMetrics } from '../observability/metrics.js';
import type { Clock } from '../timing/clock.js';
import type { Assignment } from './assignment.js';
import type { Dispatcher, JobSlot } from './dispatcher.js';
import type { Emit } from './events.js';
import { Abandoned } from './lease.js';
import type { ResolvedWorkerOptions } from './options.js';
import { KeyDeadError, type ParkedKey, type ReleaseLedger } from './parked-key.js';
import type { ParkingState } from './parking.js';
import type { RunState } from './run-state.js';
import { routing, WorkItem } from './work-item.js';

/** What KeyParking (parked-keys.ts) and the release of a key need of the worker. */
export interface KeyParkingDeps {
  state: ParkingState;
  options: ResolvedWorkerOptions;
  router: OutcomeRouter;
  runState: RunState;
  clock: Clock;
  logger: Logger;
  metrics: QueueMetrics;
  counts: OutcomeCounts;
  emit: Emit;
  assignment: Assignment;
  dispatcher: () => Dispatcher;
  /** Until acknowledged; throws `Abandoned` when the partition left or the worker stops. */
  durably: <T>(item: WorkItem, send: () => Promise<T>) => Promise<T>;
  /** Runs a released job through the executor (decode, lease, handler, policy): sets its `outcome`. */
  runReleased: (item: WorkItem, slot: JobSlot) => Promise<void>;
  /** The item reached an outcome: its offset counts as done. */
  done: (item: WorkItem) => void;
}

/** Writes that the key is being released (unless it says so); returns the dead job the rest follows into the DLQ. */
export async function markReleasing(
  deps: KeyParkingDeps,
  item: WorkItem,
  parked: ParkedKey,
  head: string,
): Promise<string | undefined> {
  if (parked.releasing) return parked.releasing.cause;
  const outcome = headerString(item.rawHeaders, HEADERS.releaseOutcome) === 'dead' ? 'dead' : 'completed';
  const cause = outcome === 'dead' && deps.options.retry.onDeadKey === 'dead-letter' ? head : undefined;
  const written = deps.durably(item, () =>
    deps.state.releasing(item.partition, item.key!, parked, { outcome, cause }),
  );
  stating(parked, written);
  await written;
  return cause;
}

/** A write of the key's state under way: the key's unpark and next park wait for it (and every earlier one). */
export function stating(parked: ParkedKey, written: Promise<unknown>): void {
  const before = parked.restating;
  const landed = written.catch(() => undefined);
  const all = before ? Promise.all([before, landed]) : landed;
  parked.restating = all;
  void all.then(() => {
    if (parked.restating === all) parked.restating = undefined;
  });
}

/**
 * A release this worker made itself stops before its next parked job: its record, accepted
 * meanwhile, runs the rest (`startRelease` starts no other copy while `handOver` names the head).
 */
async function handingOver(tombstones: Promise<void>[]): Promise<void> {
  await Promise.all(tombstones);
}

/** The release is over here (every tombstone landed): what it resolved needs no remembering. */
function forget(ledger: ReleaseLedger): void {
  ledger.done.clear();
  ledger.dead = undefined;
}

/** Every hand-off of the key's jobs under way has landed (or failed). */
async function landed(parked: ParkedKey): Promise<void> {
  while (parked.writes && parked.writes.size > 0) await Promise.allSettled([...parked.writes]);
}

/**
 * Runs a key's release (KeyParking's, parked-keys.ts): the key's state says it is being released,
 * the release record counts as done, then its parked jobs run one by one in the release's slot (or
 * are dead-lettered behind a dead head), and the key is unparked.
 */
export async function runRelease(
  deps: KeyParkingDeps,
  item: WorkItem,
  slot: JobSlot,
  parked: ParkedKey,
  head: string,
  /** The release takes a parked job (its job-topic offset): runs or dead-letters it. */
  ran: (src: number) => void,
  /** What this worker's earlier releases of the key resolved (a partition taken afresh); kept up to date. */
  ledger: ReleaseLedger = { done: new Set() },
): Promise<void> {
  const { options, durably, clock, emit, logger, dispatcher } = deps;
  const key = item.key!;
  const p = item.partition;
  parked.releaser = true;
  const resumed = parked.releasing !== undefined;
  // A release made by this worker (`releaseNow`) hands over to its record once that was accepted.
  const internal = item.offset === '-1';
  if (!internal && parked.handOver === head) parked.handOver = undefined;
  const handOver = () => internal && parked.handOver === head && parked.followers.length > 0;
  // First the key's state says it is being released (a new owner resumes from it); then the
  // release record counts as done and the key's lane is free — its new jobs are parked behind
  // the release, in order — so the partition's commit point and its other keys move on while the
  // parked jobs run, however many there are.
  let cause = await markReleasing(deps, item, parked, head);
  // A dead-letter cause the old ownership's release found and could not write: the rest follows it.
  const known = ledger.dead?.head === head ? ledger.dead.cause : undefined;
  if (cause === undefined && known !== undefined && options.retry.onDeadKey === 'dead-letter') {
    cause = known;
    await durably(item, () => deps.state.releasing(p, key, parked, { outcome: 'dead', cause: known }));
  }
  deps.done(item);
  dispatcher().releaseLane(item);
  logger.info(
    { partition: p, key, head, parked: parked.followers.length, deadLetter: cause !== undefined },
    resumed
      ? 'key release resumed: its parked jobs run in order'
      : 'key released: its parked jobs run in order',
  );
  const tombstones: Promise<void>[] = [];
  for (;;) {
    await landed(parked);
    if (handOver()) return handingOver(tombstones);
    if (parked.followers.length === 0) {
      if (parked.writes?.size) continue;
      break;
    }
    // Taken once (a read asked again must not take a job ahead of an earlier one still being written).
    const wanted = parked.followers.slice(0, 500);
    const records = await durably(item, () => deps.state.read(p, wanted));
    if (records.length === 0) {
      logger.warn(
        { partition: p, key, missing: wanted.length },
        'parked jobs missing from the parking topic',
      );
      parked.followers.splice(0, wanted.length);
      continue;
    }
    for (const record of records) {
      if (!deps.assignment.owns(item) || !deps.runState.running) throw new Abandoned();
      if (handOver()) return handingOver(tombstones);
      const job = new WorkItem(item.topic, p, record, 0, item.tracker, item.seq, clock.now());
      job.released = true;
      job.slot = slot;
      const src = Number(record.offset);
      ran(src);
      if (ledger.done.has(src)) {
        // Ended here by an earlier ownership's release, which could not write its tombstone.
        logger.info(
          { partition: p, key, offset: src },
          'parked job already ended in this worker: not run again',
        );
      } else if (cause !== undefined) {
        const error = new KeyDeadError(key, cause);
        const dead = cause;
        // Done once written, even if the partition left before that counted (the ledger's).
        const send = () =>
          deps.router.toDlq(job, error, job.attempt, 'key-dead', undefined, { [HEADERS.deadCause]: dead });
        try {
          await durably(job, () => routing(job, send()));
        } finally {
          if (job.routed) ledger.done.add(src);
        }
        deps.counts.dead_lettered++;
        emit('job:dead', job, error);
      } else {
        try {
          await deps.runReleased(job, slot);
        } finally {
          // Dead-lettered, even if the partition left before that counted: this worker's next
          // release of the key knows it (the tombstone and the dead cause were not written).
          const ended = job.outcome === 'completed' || job.outcome === 'duplicate';
          if (ended || job.outcome === 'dlq' || job.routed === 'dlq') {
            ledger.done.add(src);
            if (!ended && options.retry.onDeadKey === 'dead-letter') ledger.dead = { cause: job.jobId, head };
          }
        }
        if (job.outcome === undefined) throw new Abandoned();
        // It went to a tier: the key is parked behind it now, with the jobs after it.
        if (job.outcome === 'tier') {
          await Promise.all(tombstones);
          forget(ledger);
          return;
        }
        if (job.outcome === 'dlq' && options.retry.onDeadKey === 'dead-letter') {
          const dead = job.jobId;
          cause = dead;
          // A resumed release dead-letters the rest too. The dead job's tombstone (and its DLQ
          // record, exactly once) go with that state: a new owner never dead-letters it again as
          // dead behind itself (sim seed 10976).
          deps.state.ran(p, parked, src);
          const info = { outcome: 'dead', cause: dead } as const;
          await durably(item, () => deps.state.releasing(p, key, parked, info, { src, job }));
          continue;
        }
      }
      // Off the list now (the next read starts after it); its tombstone goes out meanwhile (with
      // the job's writes, exactly once).
      const tombstone = durably(item, deps.state.ran(p, parked, src, job));
      // Awaited below; a release cut short (Abandoned) leaves it unawaited, not unhandled.
      tombstone.catch(() => job.onRound?.(false));
      tombstones.push(tombstone);
    }
  }
  // Every parked job ran: the key's next job waits (gate 'closing') until the key is unparked.
  let closed!: () => void;
  parked.closing = new Promise<void>((resolve) => (closed = resolve));
  try {
    await Promise.all(tombstones);
    // A restate of the key's state under way (a release record read meanwhile) lands first.
    await parked.restating;
    await durably(item, () => deps.state.unpark(p, key));
    forget(ledger);
  } catch (error) {
    // The unpark may have landed: a job of the key parked from now on writes the key's state
    // (releasing) again with it, so nothing is parked behind a key the parking topic calls free.
    parked.restate = true;
    throw error;
  } finally {
    parked.closing = undefined;
    closed();
  }
}
