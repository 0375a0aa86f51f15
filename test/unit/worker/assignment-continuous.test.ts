import { describe, expect, it } from 'vitest';
import { createLogger } from '../../../src/observability/logger.js';
import type { ConsumerPort } from '../../../src/ports.js';
import { systemClock } from '../../../src/timing/clock.js';
import { Assignment } from '../../../src/worker/assignment.js';

describe('a partition kept across a rebalance (sim seeds 461971, 147702)', () => {
  it('is checked again after a gap in membership, not when the member stayed in the group', async () => {
    let reads = 0;
    const unchanged: boolean[] = [];
    const revoked: string[] = [];
    const consumer = {
      committed: async () => {
        reads++;
        return [{ topic: 'jobs', partition: 0, offset: -1 }];
      },
    } as unknown as ConsumerPort;
    const assignment = new Assignment({
      consumer,
      clock: systemClock,
      logger: createLogger({ level: 'silent' }),
      onRevoke: (tp) => revoked.push(tp),
      onNewOwnership: () => undefined,
      unchanged: async (_topic, _p, continuous) => {
        unchanged.push(continuous);
        return true;
      },
    });
    await assignment.assign({ jobs: [0] });
    const tracker = assignment.get('jobs:0')!.tracker;
    expect(reads).toBe(1);

    // Stayed in the group (same member id): nobody else held it; no read, no parking check.
    await assignment.assign({ jobs: [0] }, true);
    expect(reads).toBe(1);
    expect(unchanged).toEqual([true]);
    expect(assignment.get('jobs:0')).toMatchObject({ tracker, verified: true });

    // After a gap: the group's commit and the parking partition are asked again.
    await assignment.assign({ jobs: [0] }, false);
    expect(reads).toBe(2);
    expect(unchanged).toEqual([true, false]);
    expect(assignment.get('jobs:0')).toMatchObject({ tracker, verified: true });
    expect(revoked).toEqual([]);
  });
});
