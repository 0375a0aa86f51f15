import { afterEach, describe, expect, it, vi } from 'vitest';
import { JobTimeoutError } from '../../../src/failure/errors.js';
import { headerNumber } from '../../../src/headers.js';
import { createLogger } from '../../../src/observability/logger.js';
import { systemClock } from '../../../src/timing/clock.js';
import type { Dispatcher, JobSlot } from '../../../src/worker/dispatcher.js';
import { HandlerDeadlines, type HandlerDeps, runHandler } from '../../../src/worker/handler-call.js';
import type { JobContext } from '../../../src/worker/job.js';
import { JobView, type WorkItem } from '../../../src/worker/work-item.js';

// Handler timeouts share one timer (per-job cost): they must still fire per call, at its own deadline.

const logger = createLogger({ level: 'silent' });

afterEach(() => {
  vi.useRealTimers();
});

function deps(timeoutMs: number) {
  const stuck: WorkItem[] = [];
  const d: HandlerDeps = {
    jobTimeoutMs: timeoutMs,
    deadlines: new HandlerDeadlines(systemClock, timeoutMs),
    clock: systemClock,
    dispatcher: () => ({ markStuck: (item: WorkItem) => stuck.push(item) }) as unknown as Dispatcher,
    exactlyOnce: false,
  };
  return { d, stuck };
}

/** A handler call that runs until `release()` is called, then fails if its signal aborted meanwhile. */
function call(d: HandlerDeps, name: string) {
  let release!: () => void;
  const held = new Promise<void>((r) => {
    release = r;
  });
  let signal: AbortSignal | undefined;
  const item = { jobId: name } as WorkItem;
  const slot: JobSlot = { open: 1 };
  const result = runHandler(d, item, slot, { logger }, async (ctx) => {
    signal = (ctx as JobContext).signal;
    await held;
    // A handler that honours its signal fails with its reason.
    signal.throwIfAborted();
  });
  return { item, release, result, signal: () => signal };
}

describe('handler deadlines on one timer', () => {
  it('each call times out at its own deadline; calls that ended before theirs do not', async () => {
    vi.useFakeTimers();
    const { d } = deps(100);
    const first = call(d, 'first');
    await vi.advanceTimersByTimeAsync(40);
    const second = call(d, 'second');
    const quick = call(d, 'quick');
    quick.release();
    expect(await quick.result).toBeUndefined();
    // One timer serves all calls (not one per call).
    expect(vi.getTimerCount()).toBe(1);
    await vi.advanceTimersByTimeAsync(60);
    expect(first.signal()?.aborted).toBe(true);
    expect(second.signal()?.aborted).toBe(false);
    first.release();
    expect(await first.result).toBeInstanceOf(JobTimeoutError);
    await vi.advanceTimersByTimeAsync(39);
    expect(second.signal()?.aborted).toBe(false);
    await vi.advanceTimersByTimeAsync(1);
    expect(second.signal()?.aborted).toBe(true);
    second.release();
    expect(await second.result).toBeInstanceOf(JobTimeoutError);
    expect(quick.signal()?.aborted).toBe(false);
  });

  it('a long call ahead of thousands of short ones still times out, and the ended ones are let go', async () => {
    vi.useFakeTimers();
    const { d, stuck } = deps(1000);
    const long = call(d, 'long');
    for (let i = 0; i < 5000; i++) {
      const short = call(d, `short-${i}`);
      short.release();
      expect(await short.result).toBeUndefined();
    }
    // An ended call is let go at once (it must not keep its job's memory: the fetched records),
    // and its emptied place soon after.
    const queue = (d.deadlines as unknown as { queue: unknown[] }).queue;
    expect(queue.filter((c) => c !== undefined)).toHaveLength(1);
    expect(queue.length).toBeLessThan(200);
    await vi.advanceTimersByTimeAsync(1000);
    expect(long.signal()?.aborted).toBe(true);
    // Ignoring its signal as long again: stuck (its slot goes to other jobs).
    await vi.advanceTimersByTimeAsync(1000);
    expect(stuck.map((s) => s.jobId)).toEqual(['long']);
    long.release();
    expect(await long.result).toBeInstanceOf(JobTimeoutError);
  });

  it('without a timeout no timer is set', async () => {
    vi.useFakeTimers();
    const d: HandlerDeps = { ...deps(0).d, jobTimeoutMs: 0, deadlines: undefined };
    const c = call(d, 'c');
    expect(vi.getTimerCount()).toBe(0);
    c.release();
    expect(await c.result).toBeUndefined();
  });
});

describe('the job a handler sees', () => {
  it('reads headers only when asked, and a logged job shows them', () => {
    let parsed = 0;
    const item = {
      jobId: 'j1',
      key: 'k',
      topic: 't',
      partition: 2,
      offset: '7',
      get headers() {
        parsed++;
        return { 'strand-job-id': 'j1' };
      },
    } as unknown as WorkItem;
    const job = new JobView(item, { n: 1 }, 3, 1234);
    expect(parsed).toBe(0);
    expect(JSON.parse(JSON.stringify(job))).toEqual({
      id: 'j1',
      key: 'k',
      data: { n: 1 },
      attempt: 3,
      headers: { 'strand-job-id': 'j1' },
      topic: 't',
      partition: 2,
      offset: '7',
      enqueuedAt: 1234,
    });
    expect(parsed).toBe(1);
  });
});

describe('headerNumber', () => {
  it('reads digits without a string and anything else as Number() does', () => {
    const h = (v: unknown) => ({ x: v });
    expect(headerNumber(h(Buffer.from('1733600000123')), 'x')).toBe(1733600000123);
    expect(headerNumber(h(Buffer.from('3')), 'x')).toBe(3);
    expect(headerNumber(h(Buffer.from(' 4')), 'x')).toBe(4);
    expect(headerNumber(h(Buffer.from('abc')), 'x')).toBeNaN();
    expect(headerNumber(h(Buffer.from('')), 'x')).toBeUndefined();
    expect(headerNumber(h([Buffer.from('5'), Buffer.from('6')]), 'x')).toBe(5);
    expect(headerNumber(h('12'), 'x')).toBe(12);
    expect(headerNumber(h(undefined), 'x')).toBeUndefined();
    expect(headerNumber(undefined, 'x')).toBeUndefined();
    expect(headerNumber(h(Buffer.from('12345678901234567')), 'x')).toBe(Number('12345678901234567'));
  });
});
