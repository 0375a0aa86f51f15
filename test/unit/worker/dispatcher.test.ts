import { describe, expect, it } from 'vitest';
import { systemClock } from '../../../src/timing/clock.js';
import { Dispatcher } from '../../../src/worker/dispatcher.js';
import { RunState } from '../../../src/worker/run-state.js';
import type { WorkItem } from '../../../src/worker/work-item.js';

describe('Dispatcher', () => {
  it('tells a drain no slot is held once the last start gives its slot back (sim seed 80407)', async () => {
    const state = new RunState();
    state.phase = 'running';
    const started: WorkItem[] = [];
    let idle = 0;
    const dispatcher = new Dispatcher({
      ...{ concurrency: 1, ordering: 'key', clock: systemClock, state },
      run: async (item) => {
        started.push(item);
      },
      finished: () => undefined,
      idle: () => idle++,
    });
    let seq = 0;
    const job = (key: string) => ({ tp: 't:0', key, seq: seq++, laneFreed: false }) as unknown as WorkItem;
    dispatcher.add(job('a'));
    dispatcher.pump();
    expect(dispatcher.inflight).toBe(1);
    // Draining: the released job of a release waits for its handler's start without its slot.
    state.rebalancing = true;
    dispatcher.releaseSlot(started[0]!);
    expect(dispatcher.inflight).toBe(0);
    expect(idle).toBe(1);
  });

  it("a parked job's hand-off gives its slot to the next job, and a drain still waits for it", async () => {
    const state = new RunState();
    state.phase = 'running';
    const started: WorkItem[] = [];
    let idle = 0;
    const dispatcher = new Dispatcher({
      ...{ concurrency: 1, ordering: 'key', clock: systemClock, state },
      run: async (item) => {
        started.push(item);
      },
      finished: () => undefined,
      idle: () => idle++,
    });
    let seq = 0;
    const job = (key: string) => ({ tp: 't:0', key, seq: seq++, laneFreed: false }) as unknown as WorkItem;
    dispatcher.add(job('a'));
    dispatcher.add(job('b'));
    dispatcher.pump();
    expect(started.map((j) => j.key)).toEqual(['a']);
    dispatcher.yieldSlot(started[0]!);
    await Promise.resolve();
    // b runs in the slot a gave up; a's hand-off is still something a drain waits for.
    expect(started.map((j) => j.key)).toEqual(['a', 'b']);
    expect(dispatcher.inflight).toBe(1);
    expect(dispatcher.busy).toBe(2);
    dispatcher.settle(started[1]!);
    expect(idle).toBe(0);
    expect(dispatcher.busy).toBe(1);
    dispatcher.settle(started[0]!);
    expect(idle).toBe(1);
    expect(dispatcher.busy).toBe(0);
  });

  it("a batch's shared slot is not given up by one of its parked jobs", () => {
    const state = new RunState();
    state.phase = 'running';
    const dispatcher = new Dispatcher({
      ...{ concurrency: 1, ordering: 'key', clock: systemClock, state },
      run: async () => undefined,
      finished: () => undefined,
    });
    const slot = { open: 2, batch: {} } as never;
    const item = { tp: 't:0', key: 'a', seq: 0, laneFreed: false, slot } as unknown as WorkItem;
    (dispatcher as unknown as { running: Set<unknown> }).running.add(slot);
    dispatcher.yieldSlot(item);
    expect(dispatcher.inflight).toBe(1);
    expect(dispatcher.busy).toBe(1);
  });
});
