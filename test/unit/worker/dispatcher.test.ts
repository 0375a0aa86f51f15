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
});
