/**
 * A minimal Strand worker. Run it with:
 *   npx strand worker examples/payment-worker.ts
 * (connection from STRAND_BROKERS / STRAND_REGISTRY_URL, or the running `strand dev up` stack).
 */
import { defineWorker, NonRetriableError } from 'strand';

interface Payment {
  paymentId: string;
  accountId: string;
  amountCents: number;
  currency: 'EUR' | 'USD' | 'GBP' | 'CHF';
  sequence: number;
  createdAt: number;
  memo: string | null;
}

const balances = new Map<string, number>();

export default defineWorker<Payment>({
  topic: 'payments',
  groupId: 'payments-workers',
  concurrency: 32, // jobs in flight per worker; one at a time per account (ordering: 'key')
  retry: { inPlace: 1, tiers: ['1s', '10s', '60s'], maxAttempts: 5 },
  idempotency: { store: 'memory' }, // or new RedisIdempotencyStore({ host, port }) across workers
  metrics: { port: 9464 }, // /metrics, /healthz, /readyz
  handler: async (job, ctx) => {
    const { accountId, amountCents } = job.data;
    const next = (balances.get(accountId) ?? 0) + amountCents;
    // NonRetriableError: straight to the dead-letter topic. Anything else thrown here is retried
    // (in place, then through the tiers), then dead-lettered after maxAttempts.
    if (next < 0) throw new NonRetriableError(`insufficient funds on ${accountId}`);
    balances.set(accountId, next);
    ctx.logger.info({ balance: next }, 'payment applied');
  },
});
