/**
 * Time as the worker core sees it. The runtime uses the system clock; the deterministic
 * simulation (test/sim) passes a virtual one, so every timer in the core is driven by the seed.
 */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /**
   * Runs `fn` after `ms`. An `unref`'d timer does not keep the process alive (background upkeep);
   * a plain one does (a timer that may be all that is left to restart a consumer).
   */
  setTimeout(fn: () => void, ms: number, opts?: { unref?: boolean }): TimerHandle;
  clearTimeout(handle: TimerHandle | undefined): void;
}

/** Opaque to callers; each clock knows its own. */
export type TimerHandle = { readonly __timer: unique symbol } | object;

/**
 * The longest delay a Node timer holds (a signed 32-bit number of ms, about 24.8 days). Node runs a
 * timer with a longer delay after 1 ms, with a TimeoutOverflowWarning: a partition paused until a
 * record due in a month would be resumed at once, again and again.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A timer longer than {@link MAX_TIMER_MS}: armed in steps of at most that, re-armed until its time. */
class LongTimer {
  private timer: NodeJS.Timeout | undefined;
  private cleared = false;

  constructor(
    private readonly fn: () => void,
    private remaining: number,
    private readonly unref: boolean,
  ) {
    this.arm();
  }

  private arm(): void {
    const step = Math.min(this.remaining, MAX_TIMER_MS);
    this.timer = setTimeout(() => {
      if (this.cleared) return;
      this.remaining -= step;
      if (this.remaining > 0) this.arm();
      else this.fn();
    }, step);
    if (this.unref) this.timer.unref();
  }

  clear(): void {
    this.cleared = true;
    clearTimeout(this.timer);
  }
}

/**
 * `setTimeout` for any delay: up to {@link MAX_TIMER_MS} a plain Node timer; longer, a timer re-armed
 * in steps until the whole delay passed (Infinity: never). A delay that is not a positive number
 * (0, negative, NaN) runs at the next turn of the event loop. Clear it with {@link clearAnyTimeout}.
 */
export function setAnyTimeout(fn: () => void, ms: number, opts?: { unref?: boolean }): TimerHandle {
  const delay = Math.max(Number.isNaN(ms) ? 0 : ms, 0);
  if (delay > MAX_TIMER_MS) return new LongTimer(fn, delay, opts?.unref === true);
  const t = setTimeout(fn, delay);
  if (opts?.unref) t.unref();
  return t;
}

export function clearAnyTimeout(handle: TimerHandle | undefined): void {
  if (handle instanceof LongTimer) handle.clear();
  else if (handle) clearTimeout(handle as NodeJS.Timeout);
}

/** Every timer of the runtime goes through here (intake pauses, due queue, delays, backoffs, sleeps). */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: setAnyTimeout,
  clearTimeout: clearAnyTimeout,
};

/** Sleeps `ms` on `clock`, or less when `signal` aborts; the abort listener goes away with the timer. */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal?.aborted) return resolve();
    const onAbort = () => {
      clock.clearTimeout(t);
      resolve();
    };
    const t = clock.setTimeout(
      () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      },
      ms,
      { unref: true },
    );
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Calls `fn` every `ms` until the returned function is called (each run is scheduled after the last). */
export function every(clock: Clock, ms: number, fn: () => void): () => void {
  let handle: TimerHandle | undefined;
  let stopped = false;
  const tick = () => {
    if (stopped) return;
    fn();
    if (!stopped) handle = clock.setTimeout(tick, ms, { unref: true });
  };
  handle = clock.setTimeout(tick, ms, { unref: true });
  return () => {
    stopped = true;
    clock.clearTimeout(handle);
  };
}
