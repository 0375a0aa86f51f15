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

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout(fn, ms, opts) {
    const t = setTimeout(fn, Math.max(0, ms));
    if (opts?.unref) t.unref();
    return t;
  },
  clearTimeout(handle) {
    if (handle) clearTimeout(handle as NodeJS.Timeout);
  },
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
