import type { Logger } from '../observability/logger.js';
import type { OutboxBacklog } from '../outbox/pg.js';
import { OutboxReader, type OutboxState } from '../outbox/reader.js';
import { HISTORY_MS, SAMPLE_INTERVAL_MS } from './model.js';

export interface OutboxPoint {
  at: number;
  pending: number;
  oldestAgeSeconds: number;
  publishedPerSec: number;
}

/** Dead letters of one job topic that the relay sent there (`strand-dead-reason: outbox-rejected`). */
export type RejectedCounter = (topic: string) => Promise<number | undefined>;

/**
 * The console's view of a transactional outbox table (`strand console --database-url`): read with
 * the same reader as `strand lag --database-url` every 5 s, the last 15 minutes kept for charts.
 * The publish rate is the rows the relays removed between two readings over their interval.
 */
export class OutboxWatch {
  readonly reader: OutboxReader;
  state: OutboxState | undefined;
  error: string | undefined;
  history: OutboxPoint[] = [];
  publishedPerSec = 0;
  /** Rejected rows per job topic (undefined: its DLQ could not be read). */
  rejected = new Map<string, number | undefined>();
  /** Job topics the outbox held rows for while the console ran. */
  private readonly seenTopics = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private sampling = false;

  constructor(
    url: string,
    table: string | undefined,
    private readonly deps: { rejected: RejectedCounter; jobTopics: () => string[]; logger: Logger },
  ) {
    this.reader = new OutboxReader(url, table);
  }

  start(): void {
    this.timer = setInterval(() => void this.sample(), SAMPLE_INTERVAL_MS);
    void this.sample();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** The job topics to show: those with rows now or earlier, and the groups' topics. */
  topics(): string[] {
    return [...new Set([...this.seenTopics, ...this.deps.jobTopics()])].sort();
  }

  /** What waits for `topic` (zero when nothing). */
  backlogOf(topic: string): OutboxBacklog | undefined {
    if (!this.state) return undefined;
    return this.state.topics.find((t) => t.topic === topic) ?? { topic, pending: 0, oldestAgeSeconds: 0 };
  }

  async sample(): Promise<void> {
    if (this.sampling) return;
    this.sampling = true;
    try {
      const before = this.state;
      const now = await this.reader.state();
      // A statistics reset (or a server restart) makes the counter go back: no rate that round.
      const dt = before ? (now.at - before.at) / 1000 : 0;
      const removed = before ? now.removedTotal - before.removedTotal : -1;
      this.publishedPerSec = dt > 0 && removed >= 0 ? removed / dt : 0;
      this.state = now;
      this.error = undefined;
      for (const t of now.topics) this.seenTopics.add(t.topic);
      this.history.push({
        at: now.at,
        pending: now.topics.reduce((s, t) => s + t.pending, 0),
        oldestAgeSeconds: Math.max(0, ...now.topics.map((t) => t.oldestAgeSeconds)),
        publishedPerSec: this.publishedPerSec,
      });
      while (this.history.length > 0 && this.history[0]!.at < now.at - HISTORY_MS) this.history.shift();
    } catch (error) {
      this.error = (error as Error).message.split('\n')[0];
    } finally {
      this.sampling = false;
    }
    for (const topic of this.topics())
      this.rejected.set(
        topic,
        await this.deps.rejected(topic).catch((e: unknown) => {
          this.deps.logger.debug({ err: e, topic }, 'reading the DLQ for rejected outbox rows failed');
          return undefined;
        }),
      );
  }
}
