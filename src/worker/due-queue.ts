import type { Clock, TimerHandle } from '../timing/clock.js';
import type { WorkItem } from './work-item.js';

/**
 * Retry-tier jobs accepted shortly before they are due, held per partition in offset order and
 * released (to the dispatcher) when due: a job is never released before the ones ahead of it in its
 * partition, so two retries of one key keep their order, and no fetched batch waits for a due time
 * (a waiting batch would hold one of the consumer's `partitionsConsumedConcurrently` slots and the
 * job topic's records behind it).
 */
export class DueQueue {
  private readonly queues = new Map<
    string,
    { items: { item: WorkItem; at: number }[]; timer?: TimerHandle | undefined }
  >();

  constructor(
    private readonly clock: Clock,
    private readonly release: (item: WorkItem) => void,
  ) {}

  /** Jobs held now. */
  get size(): number {
    let n = 0;
    for (const q of this.queues.values()) n += q.items.length;
    return n;
  }

  /** True while jobs of partition `tp` are held (a later one must queue behind them). */
  holding(tp: string): boolean {
    return this.queues.has(tp);
  }

  /** Holds `item` until `at` and until every job of its partition held before it was released. */
  hold(item: WorkItem, at: number): void {
    let q = this.queues.get(item.tp);
    if (!q) {
      q = { items: [] };
      this.queues.set(item.tp, q);
    }
    q.items.push({ item, at });
    if (q.items.length === 1) this.arm(item.tp);
  }

  private arm(tp: string): void {
    const q = this.queues.get(tp);
    const head = q?.items[0];
    if (!q || !head) {
      this.queues.delete(tp);
      return;
    }
    q.timer = this.clock.setTimeout(() => this.fire(tp), Math.max(0, head.at - this.clock.now()), {
      unref: true,
    });
  }

  private fire(tp: string): void {
    const q = this.queues.get(tp);
    if (!q) return;
    q.timer = undefined;
    const now = this.clock.now();
    while (q.items.length > 0 && q.items[0]!.at <= now) this.release(q.items.shift()!.item);
    this.arm(tp);
  }

  /** Forgets the held jobs of a partition that left and returns them. */
  dropPartition(tp: string): WorkItem[] {
    const q = this.queues.get(tp);
    if (!q) return [];
    this.clock.clearTimeout(q.timer);
    this.queues.delete(tp);
    return q.items.map((x) => x.item);
  }

  /** Forgets every held job (stop) and returns them. */
  dropAll(): WorkItem[] {
    return [...this.queues.keys()].flatMap((tp) => this.dropPartition(tp));
  }
}
