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

  it('is checked again when its check after the last join had not ended, even if the member stayed since (sim seed 94027)', async () => {
    let offset = 65;
    let hold: Promise<void> | undefined;
    const consumer = {
      committed: async () => {
        const answer = [{ topic: 'jobs', partition: 0, offset }];
        await hold;
        return answer;
      },
    } as unknown as ConsumerPort;
    const revoked: string[] = [];
    const assignment = new Assignment({
      consumer,
      clock: systemClock,
      logger: createLogger({ level: 'silent' }),
      onRevoke: (tp) => revoked.push(tp),
      onNewOwnership: () => undefined,
      unchanged: async () => true,
    });
    await assignment.assign({ jobs: [0] });
    const first = assignment.get('jobs:0')!.tracker;
    expect(first.baseOffset).toBe(65);
    // Back after a gap: another member committed 81 meanwhile; the read of it is slow.
    offset = 81;
    let answer!: () => void;
    hold = new Promise((r) => {
      answer = r;
    });
    const late = assignment.assign({ jobs: [0] }, false);
    // The next generation comes while that check is still under way; the member stayed in the group.
    hold = undefined;
    await assignment.assign({ jobs: [0] }, true);
    // Once that generation's check ended (the worker resumes its partitions' releases then), the
    // ownership was not taken as it was: it starts afresh from the group's commit.
    const now = assignment.get('jobs:0')!;
    expect(revoked).toEqual(['jobs:0']);
    expect(now.tracker).not.toBe(first);
    expect(now.tracker.baseOffset).toBe(81);
    expect(now.verified).toBe(true);
    // The late check of the earlier generation finds the new ownership and leaves it alone.
    answer();
    await late;
    expect(assignment.get('jobs:0')!.tracker).toBe(now.tracker);
    expect(revoked).toEqual(['jobs:0']);
  });
});
