import { DecodeError } from '../codec/errors.js';
import { HEADERS } from '../headers.js';
import { type Context, ROOT_CONTEXT, type TracedSpan, withContext } from '../observability/tracing.js';
import type { OutgoingRecord, ProducePort, RecordHeaders } from '../ports.js';
import type { Clock, TimerHandle } from '../timing/clock.js';
import { chooseBucket } from '../topology/delays.js';
import type { TopicNames } from '../topology/topics.js';
import { errorClassName } from './errors.js';

const STACK_LIMIT = 4096;

/** Where a failed job went. */
export type Route =
  | {
      kind: 'tier';
      tier: number;
      topic: string;
      dueAt: number;
      /** The delay bucket it waits in first (a delay longer than its tier's): it reaches `topic` when due. */
      delayBucket?: string;
    }
  | { kind: 'dlq'; topic: string };

/** At most one warning this often about retry-later delays cut to the longest tier's. */
const CAPPED_WARNING_MS = 60_000;

/** What the router needs of a consumed record. */
export interface RoutedRecord {
  readonly topic: string;
  readonly partition: number;
  readonly offset: string;
  readonly key: string | null;
  readonly value: Buffer | null;
  /** Headers as strings. */
  readonly headers: Readonly<Record<string, string>>;
  /** Headers as received (republished unchanged). */
  readonly rawHeaders: RecordHeaders | undefined;
}

function failureHeaders(item: RoutedRecord, error: unknown, group: string): Record<string, string> {
  const message = error instanceof Error ? error.message : String(error);
  const stack = error instanceof Error && error.stack ? error.stack : '';
  const h: Record<string, string> = {
    [HEADERS.originTopic]: item.headers[HEADERS.originTopic] ?? item.topic,
    [HEADERS.originPartition]: item.headers[HEADERS.originPartition] ?? String(item.partition),
    [HEADERS.originOffset]: item.headers[HEADERS.originOffset] ?? item.offset,
    [HEADERS.errorClass]: errorClassName(error),
    [HEADERS.errorMessage]: message.slice(0, STACK_LIMIT),
    [HEADERS.errorStack]: Buffer.from(stack).subarray(0, STACK_LIMIT).toString('utf8'),
    [HEADERS.group]: group,
  };
  if (error instanceof DecodeError) h[HEADERS.decodeReason] = error.reason;
  return h;
}

/** `raw` without the headers named in `ours`, then `ours` (undefined values remove a header). */
export function mergeHeaders(
  raw: RecordHeaders | undefined,
  ours: Record<string, string | undefined>,
): RecordHeaders {
  const out: RecordHeaders = {};
  for (const [k, v] of Object.entries(raw ?? {})) if (v !== undefined && !(k in ours)) out[k] = v;
  for (const [k, v] of Object.entries(ours)) if (v !== undefined) out[k] = v;
  return out;
}

/**
 * Sends records with acks=all, batching those sent within 2 ms (or 500 of them) into one produce
 * request. Each promise resolves only once the broker acknowledged its record. A traced record
 * carries the context of the attempt that sent it.
 */
export class BatchedSender {
  private pending: {
    topic: string;
    message: OutgoingRecord;
    context: Context | undefined;
    resolve: () => void;
    reject: (e: unknown) => void;
  }[] = [];
  private flushTimer: TimerHandle | undefined;

  constructor(
    private readonly producer: ProducePort,
    private readonly clock: Clock,
  ) {}

  send(topic: string, message: OutgoingRecord, span?: TracedSpan): Promise<void> {
    span?.inject(message.headers);
    return new Promise((resolve, reject) => {
      this.pending.push({ topic, message, context: span?.context, resolve, reject });
      if (this.pending.length >= 500) this.flush();
      else this.flushTimer ??= this.clock.setTimeout(() => this.flush(), 2, { unref: true });
    });
  }

  private flush(): void {
    this.clock.clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return;
    const byTopic = new Map<string, OutgoingRecord[]>();
    for (const b of batch) {
      const list = byTopic.get(b.topic);
      if (list) list.push(b.message);
      else byTopic.set(b.topic, [b.message]);
    }
    // Client instrumentation (instrumentation-kafkajs) parents its send spans on the active context:
    // the routing attempt's when the request carries one record, none when it carries several jobs.
    const only = batch.length === 1 ? batch[0]!.context : undefined;
    withContext(only ?? ROOT_CONTEXT, () =>
      this.producer.send([...byTopic].map(([topic, messages]) => ({ topic, messages }))),
    ).then(
      () => {
        for (const b of batch) b.resolve();
      },
      (error: unknown) => {
        for (const b of batch) b.reject(error);
      },
    );
  }
}

/**
 * Sends failed jobs on: to a retry tier (with `strand-due-at`) or to the dead-letter topic. Key,
 * value bytes and headers are kept; the port resolves only once the broker acknowledged the record
 * (acks=all), and only then may the caller count the original offset as done.
 */
export class OutcomeRouter {
  private readonly sender: BatchedSender;
  private capped = { count: 0, warnedAt: Number.NEGATIVE_INFINITY };

  /**
   * `tierDelays`: the delay of each tier in ms (`retry.tiers`), so that a longer requested delay does
   * not wait in a tier; `logger` says when such a delay had to be cut (no delay buckets).
   */
  constructor(
    producer: ProducePort,
    private readonly topics: TopicNames,
    private readonly group: string,
    private readonly clock: Clock,
    private readonly tierDelays: readonly number[] = [],
    private readonly logger?: { warn(obj: object, msg: string): void },
    /**
     * Exactly once: records are not sent but staged with their job, for its partition's round
     * (one Kafka transaction with the commit of the job's offset).
     */
    private readonly stage?: (item: RoutedRecord, topic: string, message: OutgoingRecord) => void,
  ) {
    this.sender = new BatchedSender(producer, clock);
  }

  private send(
    item: RoutedRecord,
    topic: string,
    message: OutgoingRecord,
    span: TracedSpan | undefined,
  ): Promise<void> {
    if (!this.stage) return this.sender.send(topic, message, span);
    span?.inject(message.headers);
    this.stage(item, topic, message);
    return Promise.resolve();
  }

  /**
   * Sends a job to retry tier `opts.tier`, due `opts.delayMs` from now. A tier partition is paused
   * at its head until the head is due, so a record must not wait in a tier longer than the tier's
   * delay: it would hold every due retry behind it (and past the tier's retention, be deleted). A
   * longer delay (a `RetryLaterError` beyond the last tier) waits in the job topic's delay buckets
   * instead, which move it to the tier when due (`strand-retry-tier`, worker/delays.ts); a topic
   * without buckets gets the longest tier delay, and a warning says how to have the full one.
   */
  async toTier(
    item: RoutedRecord,
    error: unknown,
    opts: { tier: number; nextAttempt: number; delayMs: number; retryLater: boolean },
    span?: TracedSpan,
    parksKey = false,
  ): Promise<Route> {
    const topic = this.topics.tiers[opts.tier - 1];
    if (!topic) throw new Error(`no retry tier ${opts.tier}`);
    const now = this.clock.now();
    const tierDelay = this.tierDelays[opts.tier - 1];
    const buckets = this.topics.delays ?? [];
    const longer = tierDelay !== undefined && opts.delayMs > tierDelay;
    // With the 0 s bucket among them, some bucket always fits (it holds what is shorter than the rest).
    const pick = longer && buckets.length > 0 ? chooseBucket(buckets, opts.delayMs) : undefined;
    const bucket = pick?.kind === 'bucket' ? pick.bucket : undefined;
    // No bucket: the longest tier delay (tiers need not be in order; a retry-later never waits less
    // than the first tier's).
    const cap = longer && !bucket ? Math.max(...this.tierDelays) : undefined;
    if (cap !== undefined) this.warnCapped(opts.delayMs, cap, topic);
    const dueAt = now + (cap ?? opts.delayMs);
    const ours: Record<string, string> = {
      ...failureHeaders(item, error, this.group),
      [HEADERS.attempt]: String(opts.nextAttempt),
      [HEADERS.dueAt]: String(dueAt),
    };
    if (opts.retryLater) ours[HEADERS.retryLater] = String(Number(item.headers[HEADERS.retryLater] ?? 0) + 1);
    if (parksKey) ours[HEADERS.parksKey] = '1';
    if (bucket) {
      ours[HEADERS.holdUntil] = String(now + bucket.ms);
      ours[HEADERS.retryTier] = String(opts.tier);
    }
    await this.send(
      item,
      bucket?.topic ?? topic,
      { key: item.key, value: item.value, headers: mergeHeaders(item.rawHeaders, ours) },
      span,
    );
    return bucket
      ? { kind: 'tier', tier: opts.tier, topic, dueAt, delayBucket: bucket.topic }
      : { kind: 'tier', tier: opts.tier, topic, dueAt };
  }

  /** A delay cut to the longest tier's (no delay buckets): said at most once a minute, with how often. */
  private warnCapped(requestedMs: number, tierDelayMs: number, topic: string): void {
    this.capped.count++;
    const now = this.clock.now();
    if (now - this.capped.warnedAt < CAPPED_WARNING_MS) return;
    this.logger?.warn(
      { requestedMs, tierDelayMs, tier: topic, jobs: this.capped.count },
      `retry-later delays above the longest retry tier's ${tierDelayMs} ms wait only that long: ${this.topics.main} has no delay buckets (create them with "strand topics create ${this.topics.main} --delays")`,
    );
    this.capped = { count: 0, warnedAt: now };
  }

  async toDlq(
    item: RoutedRecord,
    error: unknown,
    attempt: number,
    reason: string,
    span?: TracedSpan,
    extra: Record<string, string> = {},
  ): Promise<Route> {
    const headers = mergeHeaders(item.rawHeaders, {
      ...failureHeaders(item, error, this.group),
      [HEADERS.attempt]: String(attempt),
      [HEADERS.failedAt]: String(this.clock.now()),
      [HEADERS.deadReason]: reason,
      // A parking header of the job's last hop is no instruction for a replay.
      [HEADERS.parksKey]: undefined,
      ...extra,
    });
    await this.send(item, this.topics.dlq, { key: item.key, value: item.value, headers }, span);
    return { kind: 'dlq', topic: this.topics.dlq };
  }

  /**
   * The head of a parked key (strict key order) ended: a release record (no value) goes to its key's
   * job-topic partition, where it reaches the key's lane behind every job parked before it.
   */
  async toRelease(item: RoutedRecord, jobId: string, outcome: 'completed' | 'dead'): Promise<void> {
    const partition = Number(item.headers[HEADERS.originPartition] ?? item.partition);
    await this.send(
      item,
      item.headers[HEADERS.originTopic] ?? this.topics.main,
      {
        key: item.key,
        value: null,
        partition,
        headers: {
          [HEADERS.release]: jobId,
          [HEADERS.releaseOutcome]: outcome,
          [HEADERS.group]: this.group,
        },
      },
      undefined,
    );
  }
}
