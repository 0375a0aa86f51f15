import type { Clock, TimerHandle } from '../../src/timing/clock.js';

/** A pending timer of the virtual time. */
interface Timer {
  readonly at: number;
  readonly seq: number;
  readonly fn: () => void;
  readonly owner: ChildClock | undefined;
  readonly label: string;
  cancelled: boolean;
}

/** Virtual epoch: due-at headers look like real timestamps. */
export const EPOCH = 1_700_000_000_000;

/**
 * Time of a simulated run: a heap of timers ordered by (due time, creation order). Nothing happens
 * between timers but microtasks, which the run loop drains after each one.
 */
export class VirtualTime {
  now = EPOCH;
  private heap: Timer[] = [];
  private seq = 0;

  schedule(fn: () => void, ms: number, owner?: ChildClock, label = ''): Timer {
    const delay = Number.isFinite(ms) && ms > 0 ? ms : 0;
    const timer: Timer = { at: this.now + delay, seq: this.seq++, fn, owner, label, cancelled: false };
    const a = this.heap;
    a.push(timer);
    let i = a.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(a[i]!, a[parent]!)) break;
      const t = a[i]!;
      a[i] = a[parent]!;
      a[parent] = t;
      i = parent;
    }
    return timer;
  }

  /** Takes the next live timer off the heap and moves the time to it (it is not run). */
  next(): Timer | undefined {
    for (;;) {
      const top = this.pop();
      if (!top) return undefined;
      if (top.cancelled || top.owner?.disposed) continue;
      if (top.at > this.now) this.now = top.at;
      return top;
    }
  }

  /** Due time of the next live timer. */
  peek(): number | undefined {
    while (this.heap.length > 0) {
      const top = this.heap[0]!;
      if (!top.cancelled && !top.owner?.disposed) return top.at;
      this.pop();
    }
    return undefined;
  }

  private pop(): Timer | undefined {
    const a = this.heap;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && before(a[l]!, a[m]!)) m = l;
        if (r < a.length && before(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        const t = a[i]!;
        a[i] = a[m]!;
        a[m] = t;
        i = m;
      }
    }
    return top;
  }
}

function before(a: Timer, b: Timer): boolean {
  return a.at < b.at || (a.at === b.at && a.seq < b.seq);
}

/**
 * The clock one worker instance (and its ports) sees. Disposing it cancels every timer it set:
 * a crashed process runs nothing any more.
 */
export class ChildClock implements Clock {
  disposed = false;

  constructor(
    readonly time: VirtualTime,
    readonly name: string,
  ) {}

  now(): number {
    return this.time.now;
  }

  setTimeout(fn: () => void, ms: number, _opts?: { unref?: boolean }): TimerHandle {
    return this.time.schedule(fn, ms, this, this.name);
  }

  clearTimeout(handle: TimerHandle | undefined): void {
    if (handle) (handle as Timer).cancelled = true;
  }

  dispose(): void {
    this.disposed = true;
  }
}
