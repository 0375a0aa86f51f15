import { describe, expect, it } from 'vitest';
import type { OutcomeRouter } from '../../../src/failure/router.js';
import { HEADERS } from '../../../src/headers.js';
import { createLogger } from '../../../src/observability/logger.js';
import { QueueMetrics } from '../../../src/observability/metrics.js';
import { systemClock } from '../../../src/timing/clock.js';
import type { JobSlot } from '../../../src/worker/dispatcher.js';
import type { KeyParkingDeps } from '../../../src/worker/key-release.js';
import { Abandoned } from '../../../src/worker/lease.js';
import type { ResolvedWorkerOptions } from '../../../src/worker/options.js';
import { KeyParking } from '../../../src/worker/parked-keys.js';
import { ParkingState } from '../../../src/worker/parking.js';
import { PartitionTracker } from '../../../src/worker/partition-tracker.js';
import { WorkItem } from '../../../src/worker/work-item.js';
import { MemoryParking } from '../../support/parking-records.js';

function record(
  tracker: PartitionTracker,
  offset: number,
  headers: Record<string, string>,
  value: Buffer | null,
) {
  return new WorkItem(
    'jobs',
    0,
    { offset: String(offset), key: Buffer.from('k'), value, headers },
    0,
    tracker,
    offset,
    0,
  );
}

describe('a key release cut short and resumed by the same worker (sim seed 391921)', () => {
  it('does not run again a parked job the cut release dead-lettered, and dead-letters the rest behind it', async () => {
    const logger = createLogger({ level: 'silent' });
    const state = new ParkingState({
      port: new MemoryParking(),
      group: 'g',
      clock: systemClock,
      logger,
      running: () => true,
      random: Math.random,
    });
    const ran: string[] = [];
    const deadLetters: { offset: string; reason: string; cause: string | undefined }[] = [];
    let partitionLeft = false;
    const router = {
      toDlq: async (
        item: WorkItem,
        _e: unknown,
        _a: number,
        reason: string,
        _s: unknown,
        extra?: Record<string, string>,
      ) => {
        deadLetters.push({ offset: item.offset, reason, cause: extra?.[HEADERS.deadCause] });
        return { kind: 'dlq' as const, topic: 'jobs.dlq' };
      },
    } as unknown as OutcomeRouter;
    const options = {
      topic: 'jobs',
      groupId: 'g',
      retry: { ordering: 'strict', onDeadKey: 'dead-letter', tiers: [100] },
    } as unknown as ResolvedWorkerOptions;
    const deps: KeyParkingDeps = {
      state,
      options,
      router,
      runState: { running: true } as KeyParkingDeps['runState'],
      clock: systemClock,
      logger,
      metrics: new QueueMetrics(),
      counts: { dead_lettered: 0 } as KeyParkingDeps['counts'],
      emit: (() => undefined) as KeyParkingDeps['emit'],
      assignment: { owns: () => true, get: () => undefined } as unknown as KeyParkingDeps['assignment'],
      dispatcher: () =>
        ({ releaseLane: () => undefined, nextSeq: () => 0 }) as unknown as ReturnType<
          KeyParkingDeps['dispatcher']
        >,
      durably: async (_item, send) => send(),
      // Job 11 fails for good: its DLQ record is written, then the partition leaves (the drain
      // outlasted its rejoin deadline), so its outcome does not count for this ownership.
      runReleased: async (job) => {
        ran.push(job.offset);
        if (job.offset === '11' && !partitionLeft) {
          partitionLeft = true;
          job.routed = 'dlq';
          throw new Abandoned();
        }
        job.outcome = 'completed';
      },
      done: () => undefined,
    };
    const keys = new KeyParking(deps);
    const slot = {} as JobSlot;

    const first = new PartitionTracker('jobs', 0);
    state.take(0);
    await state.ready(0);
    await state.park(record(first, 3, { [HEADERS.jobId]: 'job-3' }, Buffer.from('v')));
    const parked = state.get(0, 'k')!;
    for (const o of [10, 11, 12])
      await state.follow(record(first, o, { [HEADERS.jobId]: `job-${o}` }, Buffer.from('v')), parked);
    const release = { [HEADERS.release]: 'job-3', [HEADERS.releaseOutcome]: 'completed' };
    await expect(keys.handle(record(first, 20, release, null), slot, 'release')).rejects.toBeInstanceOf(
      Abandoned,
    );
    expect(ran).toEqual(['10', '11']);

    // Taken afresh by the same worker: the parking topic still lists job 11 (its tombstone and
    // the dead cause were never written).
    state.drop(0);
    state.take(0);
    await state.ready(0);
    expect(state.get(0, 'k')?.followers.map((f) => f.src)).toEqual([11, 12]);
    await keys.handle(record(new PartitionTracker('jobs', 0), 20, release, null), slot, 'release');

    expect(ran).toEqual(['10', '11']);
    expect(deadLetters).toEqual([{ offset: '12', reason: 'key-dead', cause: 'job-11' }]);
    expect(state.get(0, 'k')).toBeUndefined();
  });
});
