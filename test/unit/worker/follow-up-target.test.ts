import { describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/observability/logger.js';
import type { TopicRecords } from '../../../src/ports.js';
import { systemClock } from '../../../src/timing/clock.js';
import type { Dispatcher } from '../../../src/worker/dispatcher.js';
import { type HandlerDeps, runHandler } from '../../../src/worker/handler-call.js';
import type { FollowUpTarget, FollowUpTopic, JobContext } from '../../../src/worker/job.js';
import type { WorkItem } from '../../../src/worker/work-item.js';

// ctx.enqueue's two target forms: a JobProducer, or `{ topic, schema }` resolved by the worker.

const schema = { type: 'record', name: 'Ledger', fields: [{ name: 'n', type: 'int' }] };
const logger = createLogger({ level: 'silent' });

/** A target that records what it was asked to send or stage. */
function fakeTarget(name: string) {
  const sent: unknown[] = [];
  const target: FollowUpTarget<unknown> = {
    async prepare(jobs) {
      return {
        jobIds: jobs.map((_, i) => `${name}-${i}`),
        records: [
          { topic: name, messages: jobs.map(() => ({ key: null, value: Buffer.from('x'), headers: {} })) },
        ],
      } as { jobIds: string[]; records: TopicRecords[] };
    },
    async enqueueMany(jobs) {
      sent.push(...jobs);
      return jobs.map((_, i) => ({ jobId: `${name}-${i}` }));
    },
  };
  return { target, sent };
}

async function run(deps: Partial<HandlerDeps>, body: (ctx: JobContext) => Promise<unknown>) {
  const item = {} as WorkItem;
  const full: HandlerDeps = {
    jobTimeoutMs: 0,
    clock: systemClock,
    dispatcher: () => ({}) as Dispatcher,
    exactlyOnce: false,
    ...deps,
  };
  const thrown = await runHandler(full, item, { open: 1 }, { logger }, body);
  return { thrown, item };
}

describe('ctx.enqueue targets', () => {
  it('a { topic, schema } target goes through the producer the worker keeps for it', async () => {
    const asked: FollowUpTopic[] = [];
    const ledger = fakeTarget('ledger');
    const { thrown } = await run(
      {
        followUps: {
          async get(t) {
            asked.push(t);
            return ledger.target;
          },
        },
      },
      async (ctx) =>
        expect(await ctx.enqueue({ topic: 'ledger', schema }, { key: 'a', data: { n: 1 } })).toEqual({
          jobId: 'ledger-0',
        }),
    );
    expect(thrown).toBeUndefined();
    expect(asked).toEqual([{ topic: 'ledger', schema }]);
    expect(ledger.sent).toEqual([{ key: 'a', data: { n: 1 } }]);
  });

  it('with exactlyOnce it is staged with the job, not sent', async () => {
    const ledger = fakeTarget('ledger');
    const { thrown, item } = await run(
      { exactlyOnce: true, followUps: { get: async () => ledger.target } },
      (ctx) => ctx.enqueue({ topic: 'ledger', schema }, { key: 'a', data: { n: 1 } }),
    );
    expect(thrown).toBeUndefined();
    expect(ledger.sent).toEqual([]);
    expect(item.writes?.map((w) => w.topic)).toEqual(['ledger']);
  });

  it('a producer passed in is used as it is; without a worker the topic form fails the attempt with a clear error', async () => {
    const own = fakeTarget('own');
    const first = await run({}, (ctx) => ctx.enqueue(own.target, { key: null, data: { n: 2 } }));
    expect(first.thrown).toBeUndefined();
    expect(own.sent).toHaveLength(1);
    const second = await run({}, (ctx) =>
      ctx.enqueue({ topic: 'ledger', schema }, { key: null, data: { n: 3 } }),
    );
    expect((second.thrown as Error).message).toMatch(/needs a Worker/);
  });
});
