import type { Logger } from '../observability/logger.js';
import type { QueueMetrics } from '../observability/metrics.js';
import type { ConsumerPort, GroupHooks } from '../ports.js';
import { backoffDelay, retryPolicies, retryWithBackoff } from '../timing/backoff.js';
import { type Clock, sleep, type TimerHandle } from '../timing/clock.js';
import type { Assignment } from './assignment.js';
import type { Committer } from './committer.js';
import type { Dispatcher } from './dispatcher.js';
import type { Emit } from './events.js';
import type { ResolvedWorkerOptions } from './options.js';
import type { RunState } from './run-state.js';

/**
 * The worker's group membership (docs/architecture.md, "Rebalances"): the hooks the consumer port
 * calls — drain before rejoin, assignment, crash — plus a refused commit (fenced), the rejoin
 * deadline, and restarting a consumer that will not restart by itself. `round` counts assignments
 * so that a late answer for an old one (a check, a commit refusal) never acts on a newer one.
 */
export class Membership {
  private joinRound = 0;
  private isJoined = false;
  private rejoining: Promise<void> | undefined;
  private resubscribing: Promise<void> | undefined;
  /** Joined at least once since start. */
  private everJoined = false;
  /** Consumer restarts since the last join (the backoff exponent). */
  private restarts = 0;
  private restartTimer: TimerHandle | undefined;

  constructor(
    private readonly deps: {
      options: ResolvedWorkerOptions;
      state: RunState;
      assignment: Assignment;
      dispatcher: Dispatcher;
      committer: Committer;
      consumer: ConsumerPort;
      clock: Clock;
      logger: Logger;
      metrics: QueueMetrics;
      random: () => number;
      /** Resolves when no job holds a slot, or at `deadline`. */
      idle: (deadline: number) => Promise<void>;
      /** `rebalance` at an assignment, `drain` at its start and end, `revoked` when every partition is dropped. */
      emit: Emit;
      /** The assignment's kept partitions are verified: jobs may start. */
      verified?: () => void;
      /** The assignment named a topic this member does not subscribe to (see GroupHooks). */
      unknownTopic: (topic: string) => void;
    },
  ) {}

  get round(): number {
    return this.joinRound;
  }

  /** Joined the group and holding an assignment (possibly empty). */
  get joined(): boolean {
    return this.isJoined;
  }

  left(): void {
    this.isJoined = false;
  }

  clearTimers(): void {
    this.deps.clock.clearTimeout(this.restartTimer);
  }

  readonly hooks: GroupHooks = {
    beforeRejoin: () => this.drain(),
    assigned: (assignment, continuous) => {
      const ready = this.deps.assignment.assign(assignment, continuous);
      // Nothing starts until kept partitions are known to be still ours (assignment.ts).
      const round = ++this.joinRound;
      void ready.then(() => {
        if (round !== this.joinRound) return;
        this.deps.state.rebalancing = false;
        this.deps.verified?.();
        this.deps.dispatcher.pump();
      });
      this.isJoined = true;
      this.everJoined = true;
      this.restarts = 0;
      this.deps.metrics.rebalances.inc({ group: this.deps.options.groupId });
      const list = Object.entries(assignment).map(([topic, partitions]) => ({
        topic,
        partitions: [...partitions],
      }));
      this.deps.logger.info({ assignment: list }, 'assignment received');
      this.deps.emit('rebalance', list);
    },
    crashed: (error, restarting) => this.onCrash(error, restarting),
    unsubscribedTopics: (topics) => {
      for (const topic of topics) this.deps.unknownTopic(topic);
    },
  };

  /**
   * Leaves the group and joins again subscribed to `topics` (delay buckets created while the worker
   * runs), after draining as for any rebalance. Out of the group until the new subscription joins
   * (/readyz says not ready); a failed resubscribe is tried again with the `consumerRestart`
   * backoff until it succeeds or the worker stops — given up, the worker would start no job again.
   */
  resubscribe(topics: readonly string[], paused: () => string[]): Promise<void> {
    // One at a time: a second (a delay bucket found while a round's give-up resubscribes) goes after.
    const run = (this.resubscribing ?? Promise.resolve()).then(() => this.resubscribeNow(topics, paused));
    const settled = run.catch(() => undefined);
    this.resubscribing = settled;
    void settled.then(() => {
      if (this.resubscribing === settled) this.resubscribing = undefined;
    });
    return run;
  }

  private async resubscribeNow(topics: readonly string[], paused: () => string[]): Promise<void> {
    const { consumer, clock, logger, state } = this.deps;
    if (!consumer.resubscribe) return;
    const resubscribe = consumer.resubscribe.bind(consumer);
    let left = false;
    await retryWithBackoff(
      'consumerRestart',
      async () => {
        // A try after a failed one leaves again if the member joined meanwhile (a consumer
        // restart): its stop would take every partition from the group while jobs start here for
        // them (sim seed 470829: another resubscribe had rejoined between two tries).
        if (!left || this.isJoined) left = await this.leave();
        if (left) await resubscribe(topics);
      },
      {
        onError: (error, n) =>
          logger.warn({ err: error, attempt: n + 1 }, 'could not subscribe to the delay buckets; retrying'),
        wait: async (ms) => {
          await sleep(clock, ms, state.stopSignal);
          if (!state.running) throw new Error('worker stopped');
        },
        random: this.deps.random,
      },
    ).catch(() => undefined);
    if (left && state.paused) consumer.pause(paused());
  }

  /** Drains as for any rebalance, then drops every partition: the port leaves the group next. False once stopped. */
  private async leave(): Promise<boolean> {
    await this.drain();
    if (!this.deps.state.running) return false;
    // The port leaves the group: every partition goes, even one a rebalance during the drain
    // assigned again (jobs started for it now would run while its next owner runs them too).
    this.isJoined = false;
    this.joinRound++;
    this.deps.assignment.revokeAll();
    this.deps.emit('revoked', { reason: 'resubscribe' });
    this.deps.state.rebalancing = true;
    return true;
  }

  /**
   * Exactly once: a round of partition `tp` did not commit, so its jobs since the last round must
   * run again from the committed offset: the worker leaves the group and joins again (partitions
   * are fenced and read afresh). A port that cannot rejoin drops the partition until the next rebalance.
   */
  giveUp(tp: string, topics: readonly string[], paused: () => string[]): void {
    if (!this.deps.state.running || this.rejoining) return;
    if (!this.deps.consumer.resubscribe) this.deps.assignment.revoke(tp);
    else
      this.rejoining = this.resubscribe(topics, paused).finally(() => {
        this.rejoining = undefined;
      });
  }

  /** A commit sent under assignment `round` was refused: this member is out of the generation. */
  fenced(error: unknown, round: number): void {
    // Refused for an assignment already replaced by a newer one: nothing to drop.
    if (round !== this.joinRound) return;
    this.deps.logger.warn(
      { err: error },
      'commit refused: this worker is no longer in the group generation; its partitions are dropped until it rejoins',
    );
    this.joinRound++;
    this.deps.assignment.revokeAll();
    this.deps.emit('revoked', { reason: 'fenced' });
  }

  /**
   * The group is rebalancing and this member has not rejoined yet, so the old generation (and our
   * ownership) still holds: stop starting jobs, let running ones finish (up to rebalanceTimeoutMs)
   * and commit them, so the next owner of a revoked partition does not run them again. The port
   * holds our JoinGroup until this settles, as the Java client's onPartitionsRevoked does.
   */
  private async drain(): Promise<void> {
    const { clock, options, logger } = this.deps;
    this.deps.state.rebalancing = true;
    // A check of the previous assignment still under way must not end this rebalance.
    this.joinRound++;
    if (!this.deps.state.running) return;
    this.deps.emit('drain', { phase: 'start' });
    // The coordinator expels a member that does not rejoin in time. Past that point the
    // partitions are someone else's: drop them, so a job still running here cannot route or
    // commit for them (a zombie's work).
    const start = clock.now();
    const deadlineMs = this.deps.consumer.rejoinDeadlineMs ?? Number.POSITIVE_INFINITY;
    const round = this.joinRound;
    const fence = Number.isFinite(deadlineMs)
      ? clock.setTimeout(
          () => {
            if (round !== this.joinRound || !this.deps.state.rebalancing) return;
            logger.warn(
              { deadlineMs },
              'group rebalancing: the drain outlasted the rejoin deadline; partitions dropped',
            );
            this.joinRound++;
            this.deps.assignment.revokeAll();
            this.deps.emit('revoked', { reason: 'rejoin-deadline' });
          },
          deadlineMs,
          { unref: true },
        )
      : undefined;
    await this.deps.idle(start + Math.min(options.rebalanceTimeoutMs, deadlineMs * 0.8));
    // A commit stuck on a moving coordinator must not keep us from rejoining: past the budget,
    // rejoin uncommitted (the next owner redoes those jobs; the idempotency store, if any,
    // suppresses their side effects).
    const budget = new AbortController();
    const committed = await Promise.race([
      this.deps.committer.commit({ duringRebalance: true }).then(() => true),
      sleep(clock, Math.min(5000, Math.max(0, start + deadlineMs - 1 - clock.now())), budget.signal).then(
        () => false,
      ),
    ]);
    budget.abort();
    clock.clearTimeout(fence);
    const stillRunning = this.deps.dispatcher.inflight;
    this.deps.emit('drain', { phase: 'end', committed, stillRunning });
    if (committed)
      logger.info(
        { stillRunning },
        'group rebalancing: finished and committed in-flight jobs before rejoining',
      );
    else
      logger.warn(
        { stillRunning },
        'group rebalancing: the commit did not finish in time; rejoining without it',
      );
  }

  /**
   * The consumer has left the group when it reports a crash, so every partition is lost: waiting
   * jobs are dropped, running ones finish uncommitted (the next owner, maybe us again, redoes
   * them). Keeping the trackers would let a partition that another member moved forward meanwhile
   * be committed backwards. kafkajs restarts itself after retriable faults; after the others it
   * would stay down for good, leaving a live worker that takes no work, so the core restarts it.
   */
  private onCrash(error: Error, restarting: boolean): void {
    const { logger, metrics, options, clock } = this.deps;
    this.isJoined = false;
    this.joinRound++;
    this.deps.assignment.revokeAll();
    this.deps.emit('revoked', { reason: 'crash' });
    this.deps.state.rebalancing = false;
    if (!this.deps.state.running) return;
    if (restarting) {
      // A retriable fault (a coordinator not elected yet on a fresh cluster, a broker restarting)
      // is said in one line, at debug before the first join; anything else keeps its stack.
      const retriable = (error as { retriable?: boolean }).retriable === true;
      const reason = error.message.split('\n')[0];
      if (!retriable) logger.warn({ err: error }, 'consumer crashed; the client restarts it');
      else if (!this.everJoined)
        logger.debug({ reason }, 'consumer not in the group yet; the client retries');
      else logger.warn({ reason }, 'consumer crashed; the client restarts it');
      return;
    }
    const delayMs = backoffDelay(retryPolicies.consumerRestart, this.restarts++, this.deps.random);
    logger.error(
      { err: error, restartInMs: Math.round(delayMs) },
      'consumer crashed and will not restart by itself; the worker restarts it',
    );
    metrics.consumerRestarts.inc({ group: options.groupId });
    clock.clearTimeout(this.restartTimer);
    // Not unref'd: while the consumer is down this timer may be all that keeps the process alive.
    this.restartTimer = clock.setTimeout(() => {
      if (!this.deps.state.running) return;
      // A failed join reports another crash, which schedules the next attempt.
      this.deps.consumer.restart().catch((err: unknown) => this.onCrash(err as Error, false));
    }, delayMs);
  }
}
