/**
 * The first stage of a two-stage pipeline (payments → ledger) for exactly-once tests, run with
 * `strand worker test/support/pipeline-worker.ts`. Settings come from STRAND_TEST_WORKER (JSON).
 * Each payment job enqueues one ledger job (job id `<payment job id>:ledger`, same key and data)
 * through `ctx.enqueue` (`suffix` names the follow-up otherwise: the chaos scenario `exactly-once` runs
 * a second stage on the ledger topic with `suffix: 'notify'`), after a short random piece of work; with `exactlyOnce` it goes out in the
 * job's round, without it as a plain send. `failEvery`: every n-th sequence fails its first attempt
 * (it then goes to the retry tier, whose record travels in the round too). `batch`: a batch handler
 * instead, calls of up to `maxSize` jobs, one follow-up per job named with `{ for: job }`; a failing
 * job is returned in `{ failed }` and, with `exactlyOnce`, enqueues its follow-up anyway (the worker
 * must drop it: a ledger job seen twice would show it did not).
 */
import { paymentSchema } from '../../chaos/payments.js';
import { JobProducer } from '../../src/producer/job-producer.js';
import { type BatchFailure, defineWorker, type WorkerOptions } from '../../src/worker/options.js';
import type { Payment } from './jobs.js';

interface Settings {
  topic: string;
  groupId: string;
  output: string;
  exactlyOnce: boolean;
  concurrency?: number;
  commitIntervalMs?: number;
  maxMs?: number;
  tiers?: number[];
  failEvery?: number;
  suffix?: string;
  batch?: { maxSize: number; maxWaitMs?: number };
  /** Strict key order through the retry tier (keys parked behind a failed job). */
  strict?: boolean;
}

const s = JSON.parse(process.env.STRAND_TEST_WORKER ?? '{}') as Settings;
const ledger = new JobProducer<Payment>({
  brokers: (process.env.STRAND_BROKERS ?? '127.0.0.1:9092').split(','),
  registry: { url: process.env.STRAND_REGISTRY_URL ?? 'http://127.0.0.1:8081/apis/ccompat/v7' },
  topic: s.output,
  schema: paymentSchema,
  tracing: false,
});
await ledger.connect();

const work = () => new Promise((r) => setTimeout(r, Math.random() * (s.maxMs ?? 5)));
const failsNow = (job: { attempt: number; data: Payment }) =>
  s.failEvery !== undefined && job.attempt === 1 && job.data.sequence % s.failEvery === 0;
const followUpId = (id: string) => `${id}:${s.suffix ?? 'ledger'}`;

const handlers: Pick<WorkerOptions<Payment>, 'handler' | 'batchHandler' | 'batch'> = s.batch
  ? {
      batch: s.batch,
      batchHandler: async (jobs, ctx) => {
        await work();
        const failed: BatchFailure<Payment>[] = [];
        for (const job of jobs) {
          const fails = failsNow(job);
          if (fails) failed.push({ job, error: new Error('first attempt fails') });
          if (fails && !s.exactlyOnce) continue;
          const data = { key: job.key, data: job.data, jobId: followUpId(job.id) };
          await ctx.enqueue(ledger, data, { for: job });
        }
        return { failed };
      },
    }
  : {
      handler: async (job, ctx) => {
        await work();
        if (failsNow(job)) throw new Error('first attempt fails');
        await ctx.enqueue(ledger, { key: job.key, data: job.data, jobId: followUpId(job.id) });
      },
    };

export default defineWorker<Payment>({
  topic: s.topic,
  groupId: s.groupId,
  exactlyOnce: s.exactlyOnce,
  concurrency: s.concurrency ?? 32,
  commitIntervalMs: s.commitIntervalMs ?? 200,
  sessionTimeoutMs: 10_000,
  heartbeatIntervalMs: 1000,
  shutdownTimeoutMs: 5000,
  retry: { tiers: s.tiers ?? [], inPlace: 0, maxAttempts: 5, ordering: s.strict ? 'strict' : 'relaxed' },
  status: false,
  ...handlers,
});
