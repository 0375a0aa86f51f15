import { describe, expect, it } from 'vitest';
import type { FetchedBatch } from '../../../src/ports.js';
import { systemClock } from '../../../src/timing/clock.js';
import { Intake } from '../../../src/worker/intake.js';
import { JobBuffer } from '../../../src/worker/job-buffer.js';
import { PartitionTracker } from '../../../src/worker/partition-tracker.js';
import { RunState } from '../../../src/worker/run-state.js';
import type { WorkItem } from '../../../src/worker/work-item.js';

function intakeFor(opts: { tracker?: PartitionTracker } = {}) {
  const state = new RunState();
  state.phase = 'running';
  const added: WorkItem[] = [];
  let seq = 0;
  const reported: string[] = [];
  const intake = new Intake({
    topics: { main: 'jobs', tiers: ['jobs.retry.1'] },
    group: 'g',
    assignment: { get: () => ({ ready: Promise.resolve(), tracker: opts.tracker ?? {} }) } as never,
    buffer: new JobBuffer(100, 1_000_000, systemClock),
    dispatcher: {
      add: (item: WorkItem) => added.push(item),
      pump: () => undefined,
      nextSeq: () => seq++,
    } as never,
    state,
    clock: systemClock,
    metadataMaxChars: 4000,
    pending: new Map(),
    drop: () => undefined,
    resumePartition: () => undefined,
    due: { holding: () => false, hold: () => undefined } as never,
    delays: { topics: new Set(['jobs.delay.0s']), add: (item: WorkItem) => added.push(item) },
    unknownTopic: (topic) => reported.push(topic),
  });
  return { intake, added, reported };
}

function batchOf(topic: string, records: { offset: number; group?: string }[]) {
  let paused = 0;
  const batch: FetchedBatch = {
    topic,
    partition: 0,
    records: records.map(
      (r) =>
        ({
          offset: String(r.offset),
          key: Buffer.from('k'),
          value: Buffer.from('v'),
          headers: r.group ? { 'strand-group': Buffer.from(r.group) } : {},
          timestamp: '0',
        }) as never,
    ),
    lastOffset: String(records.at(-1)?.offset ?? 0),
    resolveOffset: () => undefined,
    heartbeat: async () => undefined,
    isActive: () => true,
    pause: () => {
      paused++;
      return () => undefined;
    },
  };
  return { batch, paused: () => paused };
}

describe('the intake', () => {
  it('takes no record another consumer group wrote for itself, and counts it done', async () => {
    const tracker = new PartitionTracker('jobs', 0);
    const { intake, added } = intakeFor({ tracker });
    const { batch } = batchOf('jobs', [
      { offset: 0 },
      { offset: 1, group: 'other' },
      { offset: 2, group: 'g' },
    ]);
    await intake.onBatch(batch);
    expect(added.map((i) => i.offset)).toEqual(['0', '2']);
    tracker.complete(0);
    tracker.complete(2);
    expect(tracker.commitPoint()).toBe(3);
  });

  it('pauses the partition of a topic it does not consume, reports the topic and takes no record', async () => {
    const { intake, added, reported } = intakeFor();
    const { batch, paused } = batchOf('jobs.delay.5s', [{ offset: 7 }]);
    await intake.onBatch(batch);
    expect({ added: added.length, reported, paused: paused() }).toEqual({
      added: 0,
      reported: ['jobs.delay.5s'],
      paused: 1,
    });
  });
});

describe('JobBuffer', () => {
  it('a wait that timed out leaves no waiter behind (a blocked batch waits again every time)', async () => {
    const buffer = new JobBuffer(1, 1_000_000, systemClock);
    for (let i = 0; i < 20; i++) await buffer.waitForRoom(1);
    expect((buffer as unknown as { waiters: unknown[] }).waiters).toHaveLength(0);
    // A release still wakes a waiter that is waiting.
    let woke = false;
    const waiting = buffer.waitForRoom(60_000).then(() => {
      woke = true;
    });
    buffer.wake();
    await waiting;
    expect(woke).toBe(true);
  });
});
