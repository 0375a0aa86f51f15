import { describe, expect, it } from 'vitest';
import { isStrandError } from '../../../src/errors.js';
import { createLogger } from '../../../src/observability/logger.js';
import type { TopicRecords } from '../../../src/ports.js';
import { systemClock } from '../../../src/timing/clock.js';
import { BatchCall } from '../../../src/worker/batch.js';
import type { Dispatcher } from '../../../src/worker/dispatcher.js';
import { type HandlerDeps, runHandler } from '../../../src/worker/handler-call.js';
import type { BatchHandler, FollowUpTarget, Job } from '../../../src/worker/job.js';
import { RunState } from '../../../src/worker/run-state.js';
import type { WorkItem } from '../../../src/worker/work-item.js';

// Exactly once with a batch handler: ctx.enqueue(target, data, { for: job }) stages a follow-up
// with that job's writes, kept only if that job completes in the call.

const logger = createLogger({ level: 'silent' });

/** A target whose staged record carries the follow-up's data as its value. */
function ledger() {
  const sent: unknown[] = [];
  const target: FollowUpTarget<string> = {
    async prepare(jobs) {
      const messages = jobs.map((j) => ({ key: null, value: Buffer.from(j), headers: {} }));
      return { jobIds: jobs.map((j) => `id-${j}`), records: [{ topic: 'ledger', messages }] };
    },
    async enqueueMany(jobs) {
      sent.push(...jobs);
      return jobs.map((j) => ({ jobId: `id-${j}` }));
    },
  };
  return { target, sent };
}

const valuesOf = (writes: TopicRecords[] | undefined) =>
  (writes ?? []).flatMap((w) => w.messages.map((m) => `${w.topic}:${m.value?.toString()}`));

/** Jobs of one call (their items, as the executor submits them), and a BatchCall that calls `handler`. */
function setUp(n: number, handler: BatchHandler<unknown>, exactlyOnce = true) {
  const items = Array.from(
    { length: n },
    (_, i) =>
      ({ topic: 'payments', partition: i % 2, offset: String(10 + i), seq: i }) as unknown as WorkItem,
  );
  const jobs = items.map(
    (item) =>
      ({
        id: `j${item.offset}`,
        topic: item.topic,
        partition: item.partition,
        offset: item.offset,
      }) as Job<unknown>,
  );
  const deps: HandlerDeps = {
    jobTimeoutMs: 0,
    clock: systemClock,
    dispatcher: () => ({}) as Dispatcher,
    exactlyOnce,
  };
  const state = new RunState();
  state.phase = 'running';
  const slot = { open: n };
  const batch = new BatchCall(items, slot, {
    handler: handler as unknown as BatchHandler<never>,
    invoke: (item, s, log, call, callJobs) => runHandler(deps, item, s, log, call, callJobs),
    confirm: () => true,
    holdsSlot: () => true,
    releaseSlot: () => undefined,
    reacquireSlot: async () => true,
    state,
    sizes: { observe: () => undefined } as never,
    logger,
  });
  /** Submits every job; resolves with each job's result (undefined: completed). */
  const call = () => Promise.all(items.map((item, i) => batch.submit(item, jobs[i]!)));
  return { items, jobs, call };
}

describe('batch handler follow-ups with exactlyOnce', () => {
  it("a completed job's follow-ups join its own item's writes; a failed job's are dropped", async () => {
    const { target, sent } = ledger();
    const { items, call } = setUp(3, async (jobs, ctx) => {
      for (const job of jobs) await ctx.enqueue(target, `for-${job.offset}`, { for: job });
      await ctx.enqueue(target, 'second-10', { for: jobs[0]! });
      return { failed: [{ job: jobs[1]!, error: new Error('no') }] };
    });
    const results = await call();
    expect(results[0]).toBeUndefined();
    expect((results[1] as Error).message).toBe('no');
    expect(results[2]).toBeUndefined();
    expect(valuesOf(items[0]!.writes)).toEqual(['ledger:for-10', 'ledger:second-10']);
    expect(items[1]!.writes).toBeUndefined();
    expect(valuesOf(items[2]!.writes)).toEqual(['ledger:for-12']);
    expect(sent).toEqual([]);
  });

  it('a call that throws drops every follow-up; the retried call starts with none', async () => {
    const { target } = ledger();
    let calls = 0;
    const { items, call } = setUp(2, async (batch, ctx) => {
      calls++;
      for (const job of batch) await ctx.enqueue(target, `call${calls}-${job.offset}`, { for: job });
      if (calls === 1) throw new Error('whole call failed');
    });
    const first = await call();
    expect(first.map((e) => (e as Error).message)).toEqual(['whole call failed', 'whole call failed']);
    expect(items.map((i) => i.writes)).toEqual([undefined, undefined]);
    // Retried in place: the same BatchCall calls the handler again with both jobs.
    expect(await call()).toEqual([undefined, undefined]);
    expect(valuesOf(items[0]!.writes)).toEqual(['ledger:call2-10']);
    expect(valuesOf(items[1]!.writes)).toEqual(['ledger:call2-11']);
  });

  it('a job named by position (a copy of the job object) is found too', async () => {
    const { target } = ledger();
    const { items, call } = setUp(2, async (jobs, ctx) => {
      await ctx.enqueue(target, 'copy', { for: { ...jobs[1]! } });
    });
    await call();
    expect(items[0]!.writes).toBeUndefined();
    expect(valuesOf(items[1]!.writes)).toEqual(['ledger:copy']);
  });

  it('without { for } (or with a job not in the call) enqueue rejects in one line saying what to pass', async () => {
    const { target } = ledger();
    const errors: unknown[] = [];
    const { items, call } = setUp(2, async (jobs, ctx) => {
      await ctx.enqueue(target, 'x').catch((e: unknown) => errors.push(e));
      await ctx.enqueue(target, 'x', { for: null as never }).catch((e: unknown) => errors.push(e));
      const stranger = { ...jobs[0]!, offset: '999' };
      await ctx.enqueue(target, 'y', { for: stranger }).catch((e: unknown) => errors.push(e));
    });
    expect(await call()).toEqual([undefined, undefined]);
    expect(errors).toHaveLength(3);
    for (const e of errors) {
      expect(isStrandError(e, 'CONFIG')).toBe(true);
      expect((e as Error).message).not.toContain('\n');
    }
    expect((errors[0] as Error).message).toMatch(/needs the job it belongs to: .*\{ for: job \}/);
    expect((errors[1] as Error).message).toMatch(/needs the job it belongs to/);
    expect((errors[2] as Error).message).toMatch(/not in this call \(payments:0@999\)/);
    expect(items.map((i) => i.writes)).toEqual([undefined, undefined]);
  });

  it('a call of one job needs no { for }', async () => {
    const { target } = ledger();
    const { items, call } = setUp(1, async (_jobs, ctx) => {
      await ctx.enqueue(target, 'alone');
    });
    expect(await call()).toEqual([undefined]);
    expect(valuesOf(items[0]!.writes)).toEqual(['ledger:alone']);
  });

  it('without exactlyOnce it is a plain send; { for } is optional', async () => {
    const { target, sent } = ledger();
    const { items, call } = setUp(
      2,
      async (jobs, ctx) => {
        await ctx.enqueue(target, 'a', { for: jobs[0]! });
        await ctx.enqueue(target, 'b');
      },
      false,
    );
    expect(await call()).toEqual([undefined, undefined]);
    expect(sent).toEqual(['a', 'b']);
    expect(items.map((i) => i.writes)).toEqual([undefined, undefined]);
  });
});

describe('a single job call (handler, or a batch handler given one job)', () => {
  it('{ for } naming another job rejects; naming its own job is fine', async () => {
    const { target } = ledger();
    const item = { topic: 't', partition: 0, offset: '5' } as unknown as WorkItem;
    const own = { topic: 't', partition: 0, offset: '5' } as Job<unknown>;
    const deps: HandlerDeps = {
      jobTimeoutMs: 0,
      clock: systemClock,
      dispatcher: () => ({}) as Dispatcher,
      exactlyOnce: true,
    };
    let rejected: unknown;
    const error = await runHandler(deps, item, { open: 1 }, { logger }, async (ctx) => {
      await ctx.enqueue(target, 'mine', { for: own });
      await ctx.enqueue(target, 'other', { for: { ...own, offset: '6' } }).catch((e: unknown) => {
        rejected = e;
      });
    });
    expect(error).toBeUndefined();
    expect(isStrandError(rejected, 'CONFIG')).toBe(true);
    expect(valuesOf(item.writes)).toEqual(['ledger:mine']);
  });
});
