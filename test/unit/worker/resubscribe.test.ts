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

  it('two resubscribes go one after the other: the port never leaves the group while the core holds partitions (sim seed 470829)', async () => {
    let hooks: GroupHooks | undefined;
    let c: WorkerCore | undefined;
    // What the core held each time the port was told to leave the group (stop, subscribe, run).
    const heldAtLeave: number[] = [];
    const port: ConsumerPort = {
      start: async (h) => {
        hooks = h;
        h.assigned({ jobs: [0] });
      },
      restart: async () => undefined,
      resubscribe: async () => {
        heldAtLeave.push(c!.assignedPartitions().length);
        // The first try fails; every later one joins with partition 0.
        if (heldAtLeave.length === 1) throw new Error('subscribe failed');
        hooks!.assigned({ jobs: [0] });
      },
      commit: async () => undefined,
      committed: async () => [],
      pause: () => undefined,
      resume: () => undefined,
      resumePartitions: () => undefined,
      stop: async () => undefined,
    };
    c = core(port);
    await c.start();
    // A delay bucket found, and another (or a round's give-up) while the first one's retry waits.
    const first = c.consumeDelayBuckets([{ topic: 'jobs.delay.1m', ms: 60_000 }]);
    const second = c.consumeDelayBuckets([
      { topic: 'jobs.delay.1m', ms: 60_000 },
      { topic: 'jobs.delay.5m', ms: 300_000 },
    ]);
    await Promise.all([first, second]);
    expect(heldAtLeave).toEqual([0, 0, 0]);
    expect(c.joined).toBe(true);
    expect(c.assignedPartitions()).toEqual([{ topic: 'jobs', partition: 0 }]);
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
