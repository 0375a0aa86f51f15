import { DecodeError } from '../codec/errors.js';
import { HEADERS } from '../headers.js';
import type { IHeaders, Message, Producer } from '../kafka/client.js';
import { type PartitionCounts, sendAcknowledged } from '../kafka/send.js';
import type { WorkItem } from '../worker/work-item.js';
import { errorClassName } from './errors.js';
import type { TopicNames } from './topics.js';

const STACK_LIMIT = 4096;

/** Where a failed job went. */
export type Route =
  | { kind: 'tier'; tier: number; topic: string; dueAt: number }
  | { kind: 'dlq'; topic: string };

function failureHeaders(item: WorkItem, error: unknown, group: string): Record<string, string> {
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

function mergeHeaders(raw: IHeaders | undefined, ours: Record<string, string>): IHeaders {
  const out: IHeaders = {};
  for (const [k, v] of Object.entries(raw ?? {})) if (v !== undefined && !(k in ours)) out[k] = v;
  return { ...out, ...ours };
}

/**
 * Sends failed jobs on: to the next retry tier (with `strand-due-at`) or to the dead-letter topic.
 * Key, value bytes and headers are kept; the broker must acknowledge (acks=all) before the caller
 * may count the original offset as done.
 */
export class OutcomeRouter {
  private pending: { topic: string; message: Message; resolve: () => void; reject: (e: unknown) => void }[] =
    [];
  private flushTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly producer: Producer,
    private readonly topics: TopicNames,
    private readonly tierDelays: readonly number[],
    private readonly group: string,
    private readonly counts: PartitionCounts,
    private readonly onResend?: (partitions: string[]) => void,
  ) {}

  /**
   * Sends one record, batched with the others routed within 2 ms into one produce request
   * (acks=all); resolves when the broker acknowledged it.
   */
  private send(topic: string, message: Message): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pending.push({ topic, message, resolve, reject });
      if (this.pending.length >= 500) this.flush();
      else this.flushTimer ??= setTimeout(() => this.flush(), 2);
    });
  }

  private flush(): void {
    clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    const batch = this.pending;
    this.pending = [];
    if (batch.length === 0) return;
    const byTopic = new Map<string, Message[]>();
    for (const b of batch) {
      const list = byTopic.get(b.topic);
      if (list) list.push(b.message);
      else byTopic.set(b.topic, [b.message]);
    }
    const topicMessages = [...byTopic].map(([topic, messages]) => ({ topic, messages }));
    sendAcknowledged(this.producer, topicMessages, {
      counts: this.counts,
      ...(this.onResend ? { onResend: this.onResend } : {}),
    }).then(
      () => {
        for (const b of batch) b.resolve();
      },
      (error: unknown) => {
        for (const b of batch) b.reject(error);
      },
    );
  }

  /** The tier after the one this item came from (the last tier repeats). */
  nextTier(item: WorkItem): number {
    return Math.min(item.tier + 1, this.tierDelays.length);
  }

  /** The tier whose delay is the first >= `delayMs` (or the last). */
  tierForDelay(delayMs: number): number {
    const i = this.tierDelays.findIndex((d) => d >= delayMs);
    return i < 0 ? this.tierDelays.length : i + 1;
  }

  get hasTiers(): boolean {
    return this.tierDelays.length > 0;
  }

  async toTier(
    item: WorkItem,
    error: unknown,
    opts: { tier: number; nextAttempt: number; delayMs?: number },
  ): Promise<Route> {
    const topic = this.topics.tiers[opts.tier - 1];
    if (!topic) throw new Error(`no retry tier ${opts.tier}`);
    const dueAt = Date.now() + (opts.delayMs ?? this.tierDelays[opts.tier - 1]!);
    const headers = mergeHeaders(item.rawHeaders, {
      ...failureHeaders(item, error, this.group),
      [HEADERS.attempt]: String(opts.nextAttempt),
      [HEADERS.dueAt]: String(dueAt),
    });
    await this.send(topic, { key: item.key, value: item.value, headers });
    return { kind: 'tier', tier: opts.tier, topic, dueAt };
  }

  async toDlq(item: WorkItem, error: unknown, attempt: number): Promise<Route> {
    const headers = mergeHeaders(item.rawHeaders, {
      ...failureHeaders(item, error, this.group),
      [HEADERS.attempt]: String(attempt),
      [HEADERS.failedAt]: String(Date.now()),
    });
    await this.send(this.topics.dlq, { key: item.key, value: item.value, headers });
    return { kind: 'dlq', topic: this.topics.dlq };
  }
}
