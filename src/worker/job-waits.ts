import { DecodeError } from '../codec/errors.js';
import type { Logger } from '../observability/logger.js';
import type { JobDecoder } from '../ports.js';
import { retryWithBackoff } from '../timing/backoff.js';
import { type Clock, sleep } from '../timing/clock.js';
import type { Dispatcher } from './dispatcher.js';
import type { JobLog } from './job-log.js';
import { Abandoned } from './lease.js';
import type { RunState } from './run-state.js';
import type { WorkItem } from './work-item.js';

/**
 * What a started job waits for besides its handler, each wait given up (`Abandoned`) when the
 * worker stops or the job's partition left: backoffs, its writer schema, a slot, and the writes
 * its outcome depends on (acknowledged, or again).
 */
export class JobWaits {
  constructor(
    private readonly deps: {
      state: RunState;
      clock: Clock;
      logger: Logger;
      decoder: JobDecoder;
      dispatcher: () => Dispatcher;
      /** `owns`, waiting for a just-joined partition to be verified (assignment.ts `confirm`). */
      confirm: (item: WorkItem) => boolean | Promise<boolean>;
      owns: (item: WorkItem) => boolean;
      random: () => number;
    },
  ) {}

  /** Waits while the worker runs and owns the item; throws `Abandoned` when it should not go on. */
  readonly wait = (item: WorkItem) => async (ms: number) => {
    const { state, clock } = this.deps;
    await sleep(clock, ms, state.stopSignal);
    if (!state.running || !(await this.deps.confirm(item))) throw new Abandoned();
  };

  readonly waitWhileRunning = async (ms: number) => {
    const { state, clock } = this.deps;
    await sleep(clock, ms, state.stopSignal);
    if (state.stopSignal.aborted) throw new Abandoned();
  };

  /**
   * Most records: decoded now, by a cached writer schema (or by the intake, to tell its tenant);
   * undefined when the schema must be fetched (`decode`). Throws `DecodeError` for bad bytes.
   */
  decodeNow(item: WorkItem): { data: unknown } | undefined {
    return item.decoded ?? this.deps.decoder.decodeCached?.(item.value);
  }

  /**
   * Decodes a record `decodeNow` could not (its writer schema is fetched). While its writer schema cannot be fetched (registry down) the job waits
   * without its slot — it keeps its key, so order holds, and jobs whose schemas are cached keep
   * running — and takes a slot again before its handler runs.
   */
  async decode(item: WorkItem, log: JobLog): Promise<unknown> {
    const { decoder, dispatcher } = this.deps;
    // A schema not in memory means a registry call, which may take the registry's whole retry
    // budget when it is down: the job gives its slot up for that time.
    if (!decoder.decodesLocally(item.value)) dispatcher().releaseSlot(item);
    const { data } = await retryWithBackoff('registry', () => decoder.decode(item.value), {
      onError: (error, n) => {
        if (error instanceof DecodeError) throw error;
        if (n % 10 === 0)
          log.logger.warn(
            { err: error },
            'writer schema unavailable; the job waits and retries (not dead-lettered)',
          );
        dispatcher().releaseSlot(item);
      },
      wait: this.wait(item),
      random: this.deps.random,
    });
    return data;
  }

  /**
   * A write an outcome depends on, again until acknowledged; throws `Abandoned` when the worker
   * stops or the item's partition left (its new owner redoes the job: writing it too would
   * duplicate the outcome), before or during the write.
   */
  readonly durably = async <T>(
    item: WorkItem,
    send: () => Promise<T>,
    onError: (error: unknown) => void = (error) =>
      this.deps.logger.warn({ err: error, tp: item.tp, offset: item.offset }, 'write failed; retrying'),
  ): Promise<T> => {
    if (!(await this.deps.confirm(item))) throw new Abandoned();
    const result = await retryWithBackoff('produce', send, {
      onError,
      wait: this.wait(item),
      random: this.deps.random,
    });
    // Written, but the partition left meanwhile: not an outcome of this ownership (at least once).
    if (!(await this.deps.confirm(item))) throw new Abandoned();
    return result;
  };

  /** The job may run its handler now, in the slot it holds (`holdSlot` need not wait). */
  slotHeld(item: WorkItem): boolean {
    if (!this.deps.dispatcher().holdsSlot(item)) return false;
    const { state } = this.deps;
    // Stopping: a started job (an in-place retry, a release's next job) goes on within the
    // shutdown budget, as before the stop; paused or draining, it waits.
    // A batch's job follows its batch's call (batch.ts checks); a released job runs alone.
    const inBatch = item.slot?.batch !== undefined && !item.solo && !item.released;
    return state.canStart || state.phase === 'stopping' || inBatch;
  }

  /**
   * A handler runs only with a slot and while jobs may start: a job without a slot (it waited for
   * the registry, was stuck, or starts over) takes one first, and one whose handler would start
   * while the worker is paused or draining for a rebalance gives its slot back and waits (a drain
   * does not wait for it; after the rejoin it goes on only if its partition stayed here). A batch's
   * jobs follow their batch's call (batch.ts).
   */
  async holdSlot(item: WorkItem): Promise<void> {
    const { state } = this.deps;
    const dispatcher = this.deps.dispatcher();
    if (this.slotHeld(item)) return;
    if (dispatcher.holdsSlot(item)) dispatcher.releaseSlot(item);
    const admitted = await dispatcher.reacquireSlot(item);
    if (!admitted || !state.running || !this.deps.owns(item)) throw new Abandoned();
  }
}
