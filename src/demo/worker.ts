/**
 * The demo's worker module (run by `strand demo` as `strand worker dist/demo/worker.js`): a
 * payment handler against a simulated flaky downstream. Settings come from STRAND_DEMO (JSON).
 * Every start and completion is appended to a ledger file the demo reads for its summary.
 */
import { appendFileSync } from 'node:fs';
import { NonRetriableError } from '../failure/errors.js';
import { defineWorker } from '../worker/options.js';

interface DemoSettings {
  topic: string;
  groupId: string;
  ledger: string;
  metricsPort: number;
  tiers: number[];
}

interface Payment {
  paymentId: string;
  accountId: string;
  amountCents: number;
  sequence: number;
  memo: string | null;
}

const s = JSON.parse(process.env.STRAND_DEMO ?? '{}') as DemoSettings;

export default defineWorker<Payment & Record<string, unknown>>({
  topic: s.topic,
  groupId: s.groupId,
  concurrency: 32,
  ordering: 'key',
  commitIntervalMs: 500,
  lagIntervalMs: 1000,
  heartbeatIntervalMs: 1000,
  sessionTimeoutMs: 10_000,
  retry: { inPlace: 0, tiers: s.tiers, maxAttempts: 4 },
  idempotency: { store: 'memory' },
  metrics: { port: s.metricsPort, host: '127.0.0.1' },
  handler: async (job) => {
    appendFileSync(
      s.ledger,
      `S ${job.id} ${job.data.accountId} ${job.data.sequence} ${job.attempt} ${process.pid} ${Date.now()}\n`,
    );
    // The downstream answers in 1-5 ms.
    await new Promise((r) => setTimeout(r, 1 + Math.random() * 4));
    const memo = job.data.memo ?? '';
    if (memo === 'declined') throw new NonRetriableError('card declined by the issuer');
    const flaky = /^flaky-(\d)$/.exec(memo);
    if (flaky && job.attempt <= Number(flaky[1]))
      throw new Error(`payment gateway timed out (attempt ${job.attempt})`);
    const e2e = job.enqueuedAt ? Date.now() - job.enqueuedAt : -1;
    appendFileSync(
      s.ledger,
      `C ${job.id} ${job.data.accountId} ${job.data.sequence} ${job.attempt} ${process.pid} ${Date.now()} ${e2e}\n`,
    );
  },
});
