import type { Clock, TimerHandle } from '../timing/clock.js';
import type { WorkItem } from './work-item.js';

/**
 * Accepted, unfinished jobs and their bytes, against `maxBufferedJobs` / `maxBufferedBytes`. The
 * intake waits for room (heartbeating) instead of buffering beyond them.
 */
export class JobBuffer {
  jobs = 0;
  bytes = 0;
  /** Accepted, unfinished jobs per tenant (jobs with a tenant only: fairness/). */
  readonly byTenant = new Map<string, number>();
  /** Called when a job left (deferred records may be read back: fairness/deferral.ts). */
  onRelease: (() => void) | undefined;
  private waiters: (() => void)[] = [];

  constructor(
    readonly maxJobs: number,
    private readonly maxBytes: number,
    private readonly clock: Clock,
  ) {}

  /** Room for one more job of `size` bytes (a job larger than the cap alone is let in when the buffer is empty). */
  hasRoom(size: number): boolean {
    return this.jobs < this.maxJobs && (this.bytes + size <= this.maxBytes || this.jobs === 0);
  }

  add(item: WorkItem): void {
    this.jobs++;
    this.bytes += item.size;
    item.tracker.buffered++;
    const t = item.tenant;
    if (t !== undefined) this.byTenant.set(t, (this.byTenant.get(t) ?? 0) + 1);
  }

  release(item: WorkItem): void {
    this.jobs--;
    this.bytes -= item.size;
    item.tracker.buffered--;
    const t = item.tenant;
    if (t !== undefined) {
      const n = this.byTenant.get(t)! - 1;
      if (n > 0) this.byTenant.set(t, n);
      else this.byTenant.delete(t);
    }
    this.wake();
    this.onRelease?.();
  }

  /** Resolves when something was released, or after `ms`. */
  waitForRoom(ms: number): Promise<void> {
    return new Promise((resolve) => {
      let t: TimerHandle | undefined;
      const done = () => {
        this.clock.clearTimeout(t);
        // A waiter that timed out leaves the list (a blocked batch waits again and again).
        const i = this.waiters.indexOf(done);
        if (i >= 0) this.waiters.splice(i, 1);
        resolve();
      };
      t = this.clock.setTimeout(done, ms, { unref: true });
      this.waiters.push(done);
    });
  }

  wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }
}
