import { afterEach, describe, expect, it, vi } from 'vitest';
import { clearAnyTimeout, MAX_TIMER_MS, setAnyTimeout, sleep, systemClock } from '../../src/timing/clock.js';

/** Node's own limit: a longer delay runs after 1 ms, with a TimeoutOverflowWarning. */
const NODE_TIMER_MAX = 2 ** 31 - 1;

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe('timers longer than Node allows (2^31 − 1 ms)', () => {
  it('the system clock does not run a 25-day timer at once, and Node never sees the long delay', async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    const delays: number[] = [];
    const real = globalThis.setTimeout;
    vi.spyOn(globalThis, 'setTimeout').mockImplementation(((fn: () => void, ms?: number) => {
      delays.push(ms ?? 0);
      return real(fn, ms);
    }) as typeof setTimeout);
    let fired = 0;
    const handle = systemClock.setTimeout(() => fired++, NODE_TIMER_MAX + 10_000, { unref: true });
    await new Promise((r) => real(r, 100));
    systemClock.clearTimeout(handle);
    process.off('warning', onWarning);
    expect(fired).toBe(0);
    expect(Math.max(...delays)).toBeLessThanOrEqual(NODE_TIMER_MAX);
    expect(warnings.map((w) => w.name)).not.toContain('TimeoutOverflowWarning');
  });

  it('runs a long timer once, exactly when its whole delay passed (re-armed in steps)', () => {
    vi.useFakeTimers();
    const delay = 3 * MAX_TIMER_MS + 5;
    let fired = 0;
    setAnyTimeout(() => fired++, delay);
    vi.advanceTimersByTime(MAX_TIMER_MS);
    vi.advanceTimersByTime(MAX_TIMER_MS);
    vi.advanceTimersByTime(MAX_TIMER_MS + 4);
    expect(fired).toBe(0);
    vi.advanceTimersByTime(1);
    expect(fired).toBe(1);
    vi.advanceTimersByTime(10 * MAX_TIMER_MS);
    expect(fired).toBe(1);
  });

  it('a long timer cleared after some steps never runs; Infinity never runs', () => {
    vi.useFakeTimers();
    let fired = 0;
    const long = setAnyTimeout(() => fired++, 2 * MAX_TIMER_MS);
    const never = setAnyTimeout(() => fired++, Number.POSITIVE_INFINITY);
    vi.advanceTimersByTime(MAX_TIMER_MS + 10);
    clearAnyTimeout(long);
    vi.advanceTimersByTime(20 * MAX_TIMER_MS);
    expect(fired).toBe(0);
    clearAnyTimeout(never);
  });

  it('0, negative and NaN run at the next turn; short timers are plain Node timers', () => {
    vi.useFakeTimers();
    const order: string[] = [];
    for (const [name, ms] of [
      ['zero', 0],
      ['negative', -5],
      ['nan', Number.NaN],
    ] as const)
      setAnyTimeout(() => order.push(name), ms);
    const short = setAnyTimeout(() => order.push('short'), 50);
    vi.advanceTimersByTime(0);
    expect(order).toEqual(['zero', 'negative', 'nan']);
    vi.advanceTimersByTime(50);
    expect(order).toContain('short');
    clearAnyTimeout(short);
  });

  it('sleep on the system clock for a month ends when its signal aborts', async () => {
    const stop = new AbortController();
    const slept = sleep(systemClock, 30 * 86_400_000, stop.signal);
    let done = false;
    void slept.then(() => (done = true));
    await new Promise((r) => setTimeout(r, 20));
    expect(done).toBe(false);
    stop.abort();
    await slept;
    expect(done).toBe(true);
  });
});
