import { type BatchedSender, mergeHeaders } from '../failure/router.js';
import { HEADERS, headerString } from '../headers.js';
import type { Logger } from '../observability/logger.js';
import type { OutgoingRecord } from '../ports.js';
import { retryWithBackoff } from '../timing/backoff.js';
import { type Clock, sleep, type TimerHandle } from '../timing/clock.js';
import { chooseBucket, type DelayBucket } from '../topology/delays.js';
import type { TopicNames } from '../topology/topics.js';
import type { RunState } from './run-state.js';
import type { WorkItem } from './work-item.js';

/**
 * Moves delayed jobs on (docs/architecture.md, "Delayed jobs"). The intake hands it a record of a
 * delay bucket once the record's hold ended: a job with a bucket's length or more still to wait goes
 * to the largest bucket that fits; one due sooner waits here in memory (at most the smallest
 * bucket's length) and goes to the job topic when it is due, never before. The bucket record counts
 * as done only after the broker acknowledged the moved one.
 */
export class DelayForwarder {
  private readonly timers = new Map<WorkItem, TimerHandle>();
  private readonly moving = new Set<Promise<void>>();
  private buckets: readonly DelayBucket[];
  private moved = 0;

  constructor(
    private readonly deps: {
      /**
       * The job topic, where a delayed job goes when due, and its retry tiers: a retried job waiting
       * here for a delay longer than its tier's goes to the tier its `strand-retry-tier` names
       * (failure/router.ts).
       */
      topics: Pick<TopicNames, 'main' | 'tiers'>;
      /** The consumer group whose copy of each delayed job this forwarder moves. */
      group: string;
      buckets: readonly DelayBucket[];
      sender: BatchedSender;
      /** Exactly once: the moved record is staged for the item's round instead of sent. */
      stage?: ((item: WorkItem, topic: string, message: OutgoingRecord) => void) | undefined;
      state: RunState;
      clock: Clock;
      logger: Logger;
      random: () => number;
      /** `owns`, waiting for a just-joined partition to be verified. */
      confirm: (item: WorkItem) => boolean | Promise<boolean>;
      /** Marks the bucket record done (if this ownership still holds its partition). */
      done: (item: WorkItem) => void;
      /** Releases the item (buffer, pending). */
      finished: (item: WorkItem) => void;
    },
  ) {
    this.buckets = DelayForwarder.hops(deps.buckets);
  }

  /** The 0 s bucket is the producer's way in; a hop never goes back to it. */
  private static hops(buckets: readonly DelayBucket[]): DelayBucket[] {
    return buckets.filter((b) => b.ms > 0);
  }

  /** The buckets a record may move to, when buckets were added while the worker runs. */
  setBuckets(buckets: readonly DelayBucket[]): void {
    this.buckets = DelayForwarder.hops(buckets);
  }

  /** Jobs waiting here for the end of their hold or their due time. */
  get waiting(): number {
    return this.timers.size;
  }

  /** Records this worker moved to a bucket or the job topic. */
  get movedCount(): number {
    return this.moved;
  }

  /**
   * Takes a bucket record whose hold ends within the intake's lead: it waits here until then, and
   * then until it is due if less than the smallest bucket is left, or moves on at once.
   */
  add(item: WorkItem): void {
    const { clock, logger } = this.deps;
    const due = Number(headerString(item.rawHeaders, HEADERS.dueAt));
    if (!Number.isFinite(due)) {
      // Not written by Strand's producer: run it now rather than hold it forever.
      logger.warn(
        { topic: item.topic, offset: item.offset },
        'delayed record without strand-due-at; due now',
      );
      void this.move(item, clock.now());
      return;
    }
    const hold = Number(headerString(item.rawHeaders, HEADERS.holdUntil) ?? 0) || 0;
    const remaining = due - clock.now();
    const until = chooseBucket(this.buckets, remaining).kind === 'bucket' ? hold : due;
    if (until <= clock.now()) {
      void this.move(item, due);
      return;
    }
    this.timers.set(
      item,
      clock.setTimeout(
        () => {
          this.timers.delete(item);
          void this.move(item, due);
        },
        until - clock.now(),
        { unref: true },
      ),
    );
  }

  /** Moves the record on and then marks it done; gives up when the worker stops or loses it. */
  private move(item: WorkItem, due: number): Promise<void> {
    const p = this.write(item, due).finally(() => this.moving.delete(p));
    this.moving.add(p);
    return p;
  }

  /** Resolves when the moves under way settled (their records acknowledged or given up). */
  async settled(): Promise<void> {
    while (this.moving.size > 0) await Promise.allSettled([...this.moving]);
  }

  /**
   * Each attempt chooses anew where the record goes, from the time left then (a send retried
   * through an outage must neither hold the record past its due time nor move it early): the
   * largest bucket that fits, held for its length from now; else the job topic, once due.
   */
  private async write(item: WorkItem, due: number): Promise<void> {
    const { state, clock, sender } = this.deps;
    const goOn = async () => {
      if (!state.running || !(await this.deps.confirm(item))) throw new Abandoned();
    };
    const attempt = async () => {
      let next = chooseBucket(this.buckets, due - clock.now());
      if (next.kind === 'due' && due > clock.now()) {
        await sleep(clock, due - clock.now(), state.stopSignal);
        await goOn();
        next = { kind: 'due' };
      }
      const topic = next.kind === 'bucket' ? next.bucket.topic : this.destination(item);
      const holdUntil = next.kind === 'bucket' ? String(clock.now() + next.bucket.ms) : undefined;
      const record: OutgoingRecord = {
        key: item.key,
        value: item.value,
        // Every group on the job topic moves its own copy; the group header keeps the others off it.
        headers: mergeHeaders(item.rawHeaders, {
          [HEADERS.holdUntil]: holdUntil,
          [HEADERS.group]: this.deps.group,
          ...(next.kind === 'due' ? { [HEADERS.retryTier]: undefined } : {}),
        }),
      };
      if (this.deps.stage) this.deps.stage(item, topic, record);
      else await sender.send(topic, record);
    };
    try {
      await goOn();
      await retryWithBackoff('produce', attempt, {
        onError: (error) => {
          if (error instanceof Abandoned) throw error;
          this.deps.logger.warn({ err: error }, 'could not move a delayed job; retrying');
        },
        wait: async (ms) => {
          await sleep(clock, ms, state.stopSignal);
          await goOn();
        },
        random: this.deps.random,
      });
      this.moved++;
      // Written even if the partition moved on meanwhile: the next owner moves it again (at least once).
      if (await this.deps.confirm(item)) this.deps.done(item);
    } catch (error) {
      if (!(error instanceof Abandoned)) throw error;
    } finally {
      this.deps.finished(item);
    }
  }

  /** Where a due record goes: the job topic, or for a retried job its tier (the last one, if fewer are configured now). */
  private destination(item: WorkItem): string {
    const tier = Number(headerString(item.rawHeaders, HEADERS.retryTier));
    const { main, tiers } = this.deps.topics;
    if (!Number.isInteger(tier) || tier < 1 || tiers.length === 0) return main;
    return tiers[Math.min(tier, tiers.length) - 1]!;
  }

  /** Forgets the waiting jobs of a partition that left (the next owner reads them again). */
  dropPartition(tp: string): WorkItem[] {
    const out: WorkItem[] = [];
    for (const [item, timer] of this.timers) {
      if (item.tp !== tp) continue;
      this.deps.clock.clearTimeout(timer);
      this.timers.delete(item);
      out.push(item);
    }
    return out;
  }

  /** Forgets every waiting job (stop): they stay uncommitted and are read again. */
  dropAll(): WorkItem[] {
    const out = [...this.timers.keys()];
    for (const t of this.timers.values()) this.deps.clock.clearTimeout(t);
    this.timers.clear();
    return out;
  }
}

class Abandoned extends Error {}
