import { describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/observability/logger.js';
import { QueueMetrics } from '../../../src/observability/metrics.js';
import type { ConsumerPort, GroupHooks } from '../../../src/ports.js';
import { systemClock } from '../../../src/timing/clock.js';
import { topicNames } from '../../../src/topology/topics.js';
import { WorkerCore } from '../../../src/worker/core.js';
import { resolveWorkerOptions } from '../../../src/worker/options.js';

/** A consumer whose resubscribe fails `failures` times before it joins with the new subscription. */
function flakyConsumer(failures: number) {
  let hooks: GroupHooks | undefined;
  const calls: string[][] = [];
  const port: ConsumerPort = {
    start: async (h) => {
      hooks = h;
      h.assigned({ jobs: [] });
    },
    restart: async () => undefined,
    resubscribe: async (topics) => {
      calls.push([...topics]);
      if (calls.length <= failures) throw new Error(`subscribe failed (${calls.length})`);
      hooks!.assigned({ jobs: [0] });
    },
    commit: async () => undefined,
    committed: async () => [],
    pause: () => undefined,
    resume: () => undefined,
    resumePartitions: () => undefined,
    stop: async () => undefined,
  };
  return { port, calls };
}

function core(consumer: ConsumerPort) {
  const options = resolveWorkerOptions({
    brokers: ['127.0.0.1:1'],
    registry: { url: 'http://127.0.0.1:1' },
    topic: 'jobs',
    groupId: 'g',
    retry: { tiers: [] },
    handler: async () => undefined,
  } as never);
  return new WorkerCore({
    options,
    topics: topicNames('jobs', 0),
    consumer,
    producer: { send: async () => undefined },
    decoder: {
      decodesLocally: () => true,
      decode: async () => ({ data: {} }),
    },
    clock: systemClock,
    logger: createLogger({ level: 'silent' }),
    metrics: new QueueMetrics({ defaultMetrics: false }),
    workerId: 'w',
    random: () => 0.5,
  });
}

describe('delay buckets found while the worker runs (issue 25, defect 8)', () => {
  it('a failed resubscribe is tried again until the worker is back in the group; not joined (not ready) meanwhile', async () => {
    const { port, calls } = flakyConsumer(2);
    const c = core(port);
    await c.start();
    expect(c.joined).toBe(true);
    const done = c.consumeDelayBuckets([{ topic: 'jobs.delay.1m', ms: 60_000 }]);
    await new Promise((r) => setTimeout(r, 50));
    // Between the failed attempts the worker is out of the group: /readyz says not ready.
    expect(calls.length).toBe(1);
    expect(c.joined).toBe(false);
    await done;
    expect(calls.length).toBe(3);
    expect(calls[2]).toContain('jobs.delay.1m');
    expect(c.joined).toBe(true);
    // Jobs may start again: the rebalance ended with the new assignment.
    expect(c.state.canStart).toBe(true);
    await c.stop({ timeoutMs: 100 });
  }, 20_000);

  it('a stop ends the retries', async () => {
    const { port, calls } = flakyConsumer(1000);
    const c = core(port);
    await c.start();
    const done = c.consumeDelayBuckets([{ topic: 'jobs.delay.1m', ms: 60_000 }]);
    await new Promise((r) => setTimeout(r, 50));
    await c.stop({ timeoutMs: 100 });
    await done;
    expect(calls.length).toBe(1);
  });
});
