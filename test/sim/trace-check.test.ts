import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkTraces, readTraces, type TraceSet } from './trace-check.js';

/**
 * The trace checker on small traces of two worker processes: clean ones pass, and each planted
 * fault is found by the invariant that should find it (the same judges the simulation uses).
 */
const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

type Line = Record<string, unknown>;
const T = 1_800_000_000_000;
const open = (strict = false): Line => ({
  ev: 'open',
  pid: 1,
  group: 'g',
  topic: 'jobs',
  tiers: strict ? 1 : 0,
  ordering: 'key',
  retryOrdering: 'strict',
  jobTimeoutMs: 30_000,
});
const job = (offset: number, key = `k${offset}`, jobId = `j${offset}`, partition = 0) => ({
  topic: 'jobs',
  partition,
  offset,
  key,
  jobId,
});
const start = (offset: number, extra: Line = {}) => ({ ev: 'start', ...job(offset), attempt: 1, ...extra });
const done = (offset: number, extra: Line = {}) => ({
  ev: 'end',
  ...job(offset),
  attempt: 1,
  outcome: 'completed',
  ...extra,
});
const assign = (...partitions: number[]): Line => ({
  ev: 'assign',
  assignment: [{ topic: 'jobs', partitions }],
});
const commit = (offset: number, partition = 0): Line => ({
  ev: 'commit',
  offsets: [{ topic: 'jobs', partition, offset }],
});
const drain = (phase: 'start' | 'end'): Line[] =>
  phase === 'start'
    ? [
        { ev: 'state', phase: 'running', paused: false, rebalancing: true },
        { ev: 'drain', phase: 'start' },
      ]
    : [{ ev: 'drain', phase: 'end', committed: true, stillRunning: 0 }];
const running: Line = { ev: 'state', phase: 'running', paused: false, rebalancing: false };

/** Writes each worker's lines (`[ms after T, line]`) to a trace file of its own; `exits`: when each ended. */
function traces(
  workers: Record<string, [number, Line][]>,
  exits: Record<string, number> = {},
  raw = '',
): TraceSet {
  const dir = mkdtempSync(join(tmpdir(), 'strand-trace-check-'));
  dirs.push(dir);
  for (const [w, lines] of Object.entries(workers))
    writeFileSync(
      join(dir, `${w}.jsonl`),
      lines.map(([ms, l], seq) => JSON.stringify({ t: T + ms, seq, w, ...l })).join('\n') +
        (w === 'w1' ? `\n${raw}` : '\n'),
    );
  writeFileSync(
    join(dir, 'exits.jsonl'),
    Object.entries(exits)
      .map(([w, ms]) =>
        JSON.stringify({ t: T + ms, ev: 'exit', file: `${w}.jsonl`, pid: 1, signal: 'SIGKILL', code: null }),
      )
      .join('\n'),
  );
  return readTraces(dir);
}

/** w1 owns partition 0 and runs jobs 0 and 1, drains, and hands the partition to w2, which runs job 2. */
function handOver(w2Start2At: number, extra: { w1?: [number, Line][]; w2?: [number, Line][] } = {}) {
  return {
    w1: [
      [0, open()],
      [1, running],
      [2, assign(0)],
      [10, start(0)],
      [20, done(0)],
      [21, start(1)],
      [100, ...drain('start')],
      [140, done(1)],
      [141, commit(2)],
      [142, ...drain('end')],
      [150, assign()],
      ...(extra.w1 ?? []),
    ].flatMap(([ms, ...ls]) => ls.map((l) => [ms, l] as [number, Line])),
    w2: [
      [0, open()],
      [1, running],
      [150, assign(0)],
      [w2Start2At, start(2)],
      [w2Start2At + 10, done(2)],
      [w2Start2At + 11, commit(3)],
      ...(extra.w2 ?? []),
    ] as [number, Line][],
  };
}

describe('trace checker', () => {
  it('passes a clean hand-over between two workers, and skips a torn last line', () => {
    const set = traces(handOver(160), {}, '{"t":18000000');
    const v = checkTraces(set);
    expect(v.violations).toEqual([]);
    expect(set.torn).toBe(1);
    expect(v).toMatchObject({ workers: 2, starts: 3, commits: 2, jobs: 3, jobsResolved: 3 });
  });

  it('no-outcome: a job started by a process SIGKILLed before its end, unless its completion is known elsewhere', () => {
    // w1 of the hand-over up to its start of job 1, then killed.
    const w = { w1: handOver(160).w1.slice(0, 6) };
    const v = checkTraces(traces(w, { w1: 30 }));
    expect(v.kinds['no-outcome']).toBe(1);
    expect(v.violations[0]).toMatch(/job j1 .* never completed/);
    // The scenario's ledger says the killed process completed j1 before it died: resolved.
    const known = checkTraces(traces(w, { w1: 30 }), { completedUntraced: new Set(['j1']) });
    expect(known.kinds['no-outcome']).toBeUndefined();
    expect(known).toMatchObject({ jobs: 2, jobsResolved: 2 });
  });

  it('run-overlap: a job run on a second worker while the first still runs it, beyond the tolerance', () => {
    // w2 is given partition 0 at 110 (before w1 rejoined) and runs job 1 while w1 still runs it.
    const w = handOver(160, {
      w2: [
        [110, assign(0)],
        [120, start(1)],
      ],
    });
    const v = checkTraces(traces(w));
    expect(v.kinds['run-overlap']).toBe(1);
    expect(v.violations.find((l) => l.startsWith('run-overlap'))).toMatch(
      /w2 started jobs:0@1 \(job j1\) while w1 still runs it \(started 99 ms ago\)/,
    );
    // Within the tolerance (w1 ends it 3 ms after w2 starts it): not counted; at 0 ms tolerance it is.
    const close = handOver(160, {
      w2: [
        [110, assign(0)],
        [137, start(1)],
      ],
    });
    expect(checkTraces(traces(close)).kinds['run-overlap']).toBeUndefined();
    expect(checkTraces(traces(close), { toleranceMs: 0 }).kinds['run-overlap']).toBe(1);
  });

  it('run-overlap is not held against a run that outlived its drain, or a killed process', () => {
    // w1's drain ends while job 1 still runs (budget spent): the documented overlap.
    const outlived = handOver(160);
    outlived.w1 = outlived.w1.map(([ms, l]) => [l.ev === 'end' && l.offset === 1 ? 400 : ms, l]);
    outlived.w2.push([200, start(1)], [210, done(1)]);
    expect(checkTraces(traces(outlived)).kinds['run-overlap']).toBeUndefined();
    // w1 never ended job 1: it was SIGKILLed at 120; w2 runs it at 130.
    const killed = handOver(160);
    killed.w1 = killed.w1.filter(([ms]) => ms < 100);
    killed.w2.push([130, start(1)], [135, done(1)]);
    expect(checkTraces(traces(killed, { w1: 120 })).kinds['run-overlap']).toBeUndefined();
  });

  it('start-while-held, unowned-start, key-overlap and commit-passes-unfinished', () => {
    const w = handOver(160, {
      w1: [
        [101, start(5)],
        [102, done(5)],
      ],
    });
    expect(checkTraces(traces(w)).kinds['start-while-held']).toBe(1);
    const unowned = handOver(160, { w2: [[300, { ...start(9), partition: 1 }]] });
    expect(checkTraces(traces(unowned)).kinds['unowned-start']).toBe(1);
    const keyOverlap = handOver(160, {
      w2: [
        [200, start(7, { key: 'same', jobId: 'a' })],
        [201, start(8, { key: 'same', jobId: 'b' })],
        [250, done(7, { key: 'same', jobId: 'a' })],
        [260, done(8, { key: 'same', jobId: 'b' })],
      ],
    });
    expect(checkTraces(traces(keyOverlap)).kinds['key-overlap']).toBe(1);
    // w2 commits past job 4, which it started and has not finished.
    const early = handOver(160, {
      w2: [
        [200, start(4)],
        [201, commit(5)],
        [300, done(4)],
      ],
    });
    expect(checkTraces(traces(early)).kinds['commit-passes-unfinished']).toBe(1);
  });

  it('strict-order: no attempt of a job starts before every earlier job of its key resolved', () => {
    const strict = (laterStartsAt: number) => ({
      w1: [
        [0, open(true)],
        [1, running],
        [
          2,
          {
            ev: 'assign',
            assignment: [
              { topic: 'jobs', partitions: [0] },
              { topic: 'jobs.retry.1', partitions: [0] },
            ],
          },
        ],
        [10, start(0, { key: 'k', jobId: 'head' })],
        [20, { ...done(0, { key: 'k', jobId: 'head' }), outcome: 'failed', next: 'tier' }],
        [25, { ev: 'outcome', ...job(0, 'k', 'head'), outcome: 'retried' }],
        [30, { ev: 'outcome', ...job(1, 'k', 'next'), outcome: 'parked', head: 'head' }],
        // The head's retry (a tier record with its origin) completes at 500.
        [
          490,
          {
            ...start(0, { key: 'k', jobId: 'head', attempt: 2 }),
            topic: 'jobs.retry.1',
            originPartition: 0,
            originOffset: 0,
          },
        ],
        [500, { ...done(0, { key: 'k', jobId: 'head', attempt: 2 }), topic: 'jobs.retry.1' }],
        [laterStartsAt, start(1, { key: 'k', jobId: 'next', released: true })],
        [laterStartsAt + 5, done(1, { key: 'k', jobId: 'next' })],
      ] as [number, Line][],
    });
    expect(checkTraces(traces(strict(510))).violations).toEqual([]);
    const v = checkTraces(traces(strict(300)));
    expect(v.kinds['strict-order']).toBe(1);
    expect(v.violations[0]).toMatch(
      /started job next .* before job head \(@0\) of its key resolved \(200 ms later\)/,
    );
  });

  it('no-outcome: a job seen in a trace that never completed nor was dead-lettered', () => {
    const w = handOver(160, { w2: [[300, start(6)]] });
    const v = checkTraces(traces(w, { w2: 400 }));
    expect(v.kinds['no-outcome']).toBe(1);
    expect(v.jobs - v.jobsResolved).toBe(1);
  });
});
