import { describe, expect, it } from 'vitest';
import { createKeyPartitioner } from '../../../src/kafka/partitioner.js';
import { createLogger } from '../../../src/observability/logger.js';
import { QueueMetrics } from '../../../src/observability/metrics.js';
import type {
  ConsumerPort,
  FetchedBatch,
  FetchedRecord,
  GroupHooks,
  ParkingPort,
} from '../../../src/ports.js';
import { topicNames } from '../../../src/topology/topics.js';
import { WorkerCore } from '../../../src/worker/core.js';
import { resolveWorkerOptions } from '../../../src/worker/options.js';
import { KeyParking } from '../../../src/worker/parked-keys.js';
import { ChildClock, VirtualTime } from '../../sim/clock.js';
import { Rng } from '../../sim/random.js';

/**
 * A kafkajs-like consumer on virtual time, one broker: a fetch takes every unpaused partition from
 * its fetch position (the last resolved offset + 1) up to `maxBytesPerPartition` (`maxBytes` in
 * all), its batches go to `partitionsConsumedConcurrently` workers, and the next fetch waits until
 * every batch of this one returned (kafkajs' fetcher and worker queue); no data: the fetch waits
 * `maxWaitTimeInMs`. The sizes are the worker port's (src/kafka/worker-port.ts).
 */
class FetchLoop implements ConsumerPort {
  private readonly position = new Map<number, number>();
  private readonly paused = new Set<number>();
  private hooks: GroupHooks | undefined;
  private onBatch: ((batch: FetchedBatch) => Promise<void>) | undefined;
  private stopped = false;
  fetches = 0;

  constructor(
    private readonly clock: ChildClock,
    private readonly logs: readonly FetchedRecord[][],
    private readonly topic: string,
    private readonly concurrency: number,
  ) {}

  async start(hooks: GroupHooks, onBatch: (batch: FetchedBatch) => Promise<void>): Promise<void> {
    this.hooks = hooks;
    this.onBatch = onBatch;
    hooks.assigned({ [this.topic]: this.logs.map((_, p) => p) });
    this.clock.setTimeout(() => void this.loop(), 1);
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      this.fetches++;
      const batches: FetchedBatch[] = [];
      let total = 0;
      for (let p = 0; p < this.logs.length && total < 4 * 1024 * 1024; p++) {
        if (this.paused.has(p)) continue;
        const from = this.position.get(p) ?? 0;
        const records: FetchedRecord[] = [];
        let bytes = 0;
        for (const r of this.logs[p]!.slice(from)) {
          if (bytes >= 512 * 1024) break;
          records.push(r);
          bytes += (r.value?.length ?? 0) + (r.key?.length ?? 0) + 30;
        }
        total += bytes;
        if (records.length > 0) batches.push(this.batch(p, records));
      }
      if (batches.length === 0) {
        await new Promise<void>((r) => this.clock.setTimeout(r, 200));
        continue;
      }
      const queue = [...batches];
      const work = async () => {
        for (let b = queue.shift(); b; b = queue.shift()) await this.onBatch!(b);
      };
      await Promise.all(Array.from({ length: this.concurrency }, work));
      // kafkajs hands the next fetch's batches on a later turn of the event loop.
      await new Promise<void>((r) => this.clock.setTimeout(r, 1));
    }
  }

  private batch(partition: number, records: FetchedRecord[]): FetchedBatch {
    return {
      topic: this.topic,
      partition,
      records,
      lastOffset: records[records.length - 1]!.offset,
      resolveOffset: (offset) => {
        const next = Number(offset) + 1;
        if (next > (this.position.get(partition) ?? 0)) this.position.set(partition, next);
      },
      heartbeat: async () => undefined,
      isActive: () => !this.stopped,
      pause: () => {
        this.paused.add(partition);
        return () => this.paused.delete(partition);
      },
    };
  }

  restart = async () => undefined;
  commit = async () => undefined;
  committed = async () => [];
  pause = () => undefined;
  resume = () => undefined;
  resumePartitions(partitions: readonly { topic: string; partition: number }[]): void {
    for (const { partition } of partitions) this.paused.delete(partition);
  }
  async stop(): Promise<void> {
    this.stopped = true;
    void this.hooks;
  }
}

/** An empty parking topic that answers at once (strict key order reads it before a partition's jobs). */
const emptyParking: ParkingPort = {
  scan: async () => -1,
  read: async () => [],
  write: async (_p, records) => records.map((_, i) => i),
  endOffset: async () => 0,
};

interface Call {
  readonly start: number;
  end: number;
  readonly jobs: readonly {
    readonly key: string | null;
    readonly partition: number;
    readonly offset: string;
  }[];
}

/**
 * Payments over `keys` keys (the integration test's shape: test/integration/batch.test.ts), run by
 * the real WorkerCore with a batch handler that takes 2–10 ms per call, on virtual time, to the end.
 */
async function runBatches(opts: {
  ordering: 'strict' | 'relaxed';
  partitions: number;
  keys: number;
  total: number;
  maxSize: number;
  concurrency: number;
}): Promise<Call[]> {
  const time = new VirtualTime();
  const clock = new ChildClock(time, 'w');
  const rng = new Rng(31);
  const partitionOf = createKeyPartitioner();
  const logs: FetchedRecord[][] = Array.from({ length: opts.partitions }, () => []);
  for (let i = 0; i < opts.total; i++) {
    const key = `account-${(i % opts.keys).toString().padStart(6, '0')}`;
    const log = logs[partitionOf('jobs', key, opts.partitions)]!;
    log.push({
      offset: String(log.length),
      key: Buffer.from(key),
      value: Buffer.alloc(120, i % 251),
      headers: { 'strand-job-id': `job-${i}` },
    });
  }
  const calls: Call[] = [];
  let completed = 0;
  const options = resolveWorkerOptions({
    brokers: ['127.0.0.1:1'],
    registry: { url: 'http://127.0.0.1:1' },
    topic: 'jobs',
    groupId: 'g',
    concurrency: opts.concurrency,
    retry: { tiers: ['1s'], ordering: opts.ordering },
    batch: { maxSize: opts.maxSize, maxWaitMs: 50 },
    batchHandler: async (jobs: Call['jobs']) => {
      const call: Call = { start: clock.now(), end: Number.POSITIVE_INFINITY, jobs };
      calls.push(call);
      await new Promise<void>((r) => clock.setTimeout(r, 2 + Math.floor(rng.next() * 9)));
      call.end = clock.now();
      completed += jobs.length;
    },
  } as never);
  const core = new WorkerCore({
    options,
    topics: topicNames('jobs', 1),
    consumer: new FetchLoop(clock, logs, 'jobs', KeyParking.partitionsTakenAtOnce(options)),
    producer: { send: async () => undefined },
    parking: emptyParking,
    decoder: { decodesLocally: () => true, decode: async () => ({ data: {} }) },
    clock,
    logger: createLogger({ level: 'silent' }),
    metrics: new QueueMetrics({ defaultMetrics: false }),
    workerId: 'w',
    random: () => 0.5,
  });
  let stopped = false;
  void core
    .start()
    .then(async () => {
      while (completed < opts.total) await new Promise<void>((r) => clock.setTimeout(r, 10));
      await core.stop({ timeoutMs: 1000 });
    })
    .finally(() => {
      stopped = true;
    });
  for (let steps = 0; !stopped; steps++) {
    await new Promise<void>((r) => setImmediate(r));
    const timer = time.next();
    if (!timer || steps > 1_000_000) throw new Error(`stuck at ${completed} of ${opts.total} jobs`);
    timer.fn();
  }
  return calls;
}

const mean = (calls: readonly Call[]) => calls.reduce((n, c) => n + c.jobs.length, 0) / calls.length;

/** Per key: its calls never overlap in time and take its jobs in offset order. */
function keyOrderViolations(calls: readonly Call[], strict: boolean): string[] {
  const byKey = new Map<string, { call: Call; offset: number }[]>();
  for (const call of calls)
    for (const j of call.jobs) {
      const key = `${j.partition}/${j.key}`;
      byKey.set(key, [...(byKey.get(key) ?? []), { call, offset: Number(j.offset) }]);
    }
  const out: string[] = [];
  for (const [key, runs] of byKey)
    for (let i = 1; i < runs.length; i++) {
      const [a, b] = [runs[i - 1]!, runs[i]!];
      if (b.offset <= a.offset) out.push(`${key}: ${b.offset} ran after ${a.offset}`);
      if (b.call !== a.call && b.call.start < a.call.end)
        out.push(`${key}: ${b.offset} overlapped ${a.offset}`);
      if (b.call === a.call && strict) out.push(`${key}: ${a.offset} and ${b.offset} in one call`);
    }
  return out;
}

describe("strict batches fill with the heads of every partition's keys (issue 31)", () => {
  // Before: the first partition's fetched batch took 833 of the buffer's 1,000 places and kafkajs
  // took 3 partitions at once, so batches held the keys of 2–3 partitions: 21.9 jobs per call.
  it('5,000 jobs over 50 keys on 6 partitions, maxSize 100, maxWaitMs 50, concurrency 8: 30 jobs or more per call', async () => {
    const shape = { partitions: 6, keys: 50, total: 5000, maxSize: 100, concurrency: 8 };
    const strict = await runBatches({ ...shape, ordering: 'strict' });
    const relaxed = await runBatches({ ...shape, ordering: 'relaxed' });
    console.info(
      `strict: ${strict.length} calls, mean ${mean(strict).toFixed(1)}; relaxed: ${relaxed.length} calls, mean ${mean(relaxed).toFixed(1)}`,
    );
    expect(strict.reduce((n, c) => n + c.jobs.length, 0)).toBe(5000);
    expect(keyOrderViolations(strict, true)).toEqual([]);
    expect(keyOrderViolations(relaxed, false)).toEqual([]);
    expect(mean(strict)).toBeGreaterThanOrEqual(30);
  }, 60_000);

  // The batch bench's shape (bench/scenarios.ts), smaller: 156 jobs per call before.
  it('20,000 jobs over 1,000 keys on 12 partitions, maxSize 500, concurrency 64: batches near full', async () => {
    const shape = { partitions: 12, keys: 1000, total: 20_000, maxSize: 500, concurrency: 64 };
    const strict = await runBatches({ ...shape, ordering: 'strict' });
    console.info(`strict: ${strict.length} calls, mean ${mean(strict).toFixed(1)}`);
    expect(keyOrderViolations(strict, true)).toEqual([]);
    expect(mean(strict)).toBeGreaterThanOrEqual(400);
  }, 60_000);
});
