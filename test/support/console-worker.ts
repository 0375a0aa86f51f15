/**
 * The worker module of the console test, run with `strand worker test/support/console-worker.ts`.
 * Settings come from STRAND_TEST_WORKER (JSON); one ledger line per handler start (S) and
 * completion (C), as in ledger-worker.ts. What a job does depends on its memo:
 * - `dead-until-replayed`: NonRetriableError (straight to the DLQ) until it comes back from a replay;
 * - `poison`: NonRetriableError every time;
 * - `later`: RetryLaterError, so it waits in the retry tier;
 * - anything else completes.
 */
import { appendFileSync } from 'node:fs';
import { NonRetriableError, RetryLaterError } from '../../src/failure/errors.js';
import { defineWorker } from '../../src/worker/options.js';
import type { Payment } from './jobs.js';

const s = JSON.parse(process.env.STRAND_TEST_WORKER ?? '{}') as {
  topic: string;
  groupId: string;
  ledger: string;
  tiers?: number[];
};

export default defineWorker<Payment>({
  topic: s.topic,
  groupId: s.groupId,
  concurrency: 4,
  commitIntervalMs: 500,
  sessionTimeoutMs: 10_000,
  heartbeatIntervalMs: 1000,
  shutdownTimeoutMs: 5000,
  lagIntervalMs: 2000,
  retry: { tiers: s.tiers ?? [60_000], inPlace: 0, maxAttempts: 3 },
  handler: async (job) => {
    const line = (kind: string) =>
      appendFileSync(
        s.ledger,
        `${kind} ${job.id} ${job.data.accountId.replace(/\s/g, '_')} ${job.data.sequence} ${job.attempt} ${process.pid} ${Date.now()}\n`,
      );
    line('S');
    await new Promise((r) => setTimeout(r, 20));
    const memo = job.data.memo ?? '';
    if (memo === 'dead-until-replayed' && Number(job.headers['strand-replay-count'] ?? 0) < 1)
      throw new NonRetriableError('the payee account is blocked until someone looks at it');
    if (memo === 'poison') throw new NonRetriableError('payment can never be applied');
    if (memo === 'later') throw new RetryLaterError({ delayMs: 60_000, message: 'bank cut-off passed' });
    line('C');
  },
});
