import { describe, expect, it } from 'vitest';
import type { FetchedBatch } from '../../../src/ports.js';
import { systemClock } from '../../../src/timing/clock.js';
import { Intake, JobBuffer } from '../../../src/worker/intake.js';
import { RunState } from '../../../src/worker/run-state.js';

describe('the intake and a topic the worker does not consume', () => {
  it('pauses its partition, reports the topic and takes no record as a job', async () => {
    const state = new RunState();
    state.phase = 'running';
    const added: unknown[] = [];
    const reported: string[] = [];
    let paused = 0;
    let resolved = 0;
    const intake = new Intake({
      topics: { main: 'jobs', tiers: ['jobs.retry.1'] },
      assignment: { get: () => ({ ready: Promise.resolve(), tracker: {} }) } as never,
      buffer: new JobBuffer(100, 1_000_000, systemClock),
      dispatcher: { add: (item: unknown) => added.push(item), pump: () => undefined } as never,
      state,
      clock: systemClock,
      metadataMaxChars: 4000,
      pending: new Map(),
      drop: () => undefined,
      resumePartition: () => undefined,
      due: { holding: () => false, hold: () => undefined } as never,
      delays: { topics: new Set(['jobs.delay.0s']), add: (item: unknown) => added.push(item) },
      unknownTopic: (topic) => reported.push(topic),
    });
    const batch: FetchedBatch = {
      topic: 'jobs.delay.5s',
      partition: 2,
      records: [
        { offset: '7', key: Buffer.from('k'), value: Buffer.from('v'), headers: {}, timestamp: '0' } as never,
      ],
      lastOffset: '7',
      resolveOffset: () => void resolved++,
      heartbeat: async () => undefined,
      isActive: () => true,
      pause: () => {
        paused++;
        return () => undefined;
      },
    };
    await intake.onBatch(batch);
    expect({ added: added.length, reported, paused, resolved }).toEqual({
      added: 0,
      reported: ['jobs.delay.5s'],
      paused: 1,
      resolved: 0,
    });
  });
});
