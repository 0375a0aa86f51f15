import { loadAvroSchemaFile } from '../../src/codec/index.js';
import { createLogger } from '../../src/observability/logger.js';
import { JobProducer } from '../../src/producer/job-producer.js';
import { stack } from './helpers.js';

export const paymentSchema = loadAvroSchemaFile('schemas/payment.avsc');

export interface Payment {
  paymentId: string;
  accountId: string;
  amountCents: number;
  currency: 'EUR' | 'USD' | 'GBP' | 'CHF';
  sequence: number;
  createdAt: number;
  memo: string | null;
}

/**
 * Enqueues `count` payments over `keys` accounts; `sequence` is the per-account order (1, 2, ...),
 * so a test can check per-key order from the data alone. Returns the job ids in enqueue order.
 */
export async function enqueuePayments(
  topic: string,
  count: number,
  keys: number,
  opts: { memo?: (i: number) => string | null; batch?: number } = {},
): Promise<{ jobIds: string[]; byKey: Map<string, string[]> }> {
  const producer = new JobProducer<Payment>({
    brokers: stack().brokers,
    registry: { url: stack().registryUrl },
    topic,
    schema: paymentSchema,
    logger: createLogger({ level: 'error' }),
  });
  await producer.connect();
  const seqs = new Map<string, number>();
  const jobIds: string[] = [];
  const byKey = new Map<string, string[]>();
  const batch = opts.batch ?? 1000;
  for (let i = 0; i < count; i += batch) {
    const jobs: { key: string; data: Payment }[] = [];
    for (let j = i; j < Math.min(count, i + batch); j++) {
      const accountId = `acct-${j % keys}`;
      const sequence = (seqs.get(accountId) ?? 0) + 1;
      seqs.set(accountId, sequence);
      jobs.push({
        key: accountId,
        data: {
          paymentId: `pay-${j}`,
          accountId,
          amountCents: j,
          currency: 'EUR',
          sequence,
          createdAt: Date.now(),
          memo: opts.memo ? opts.memo(j) : null,
        },
      });
    }
    const results = await producer.enqueueMany(jobs);
    results.forEach((r, k) => {
      jobIds.push(r.jobId);
      const key = jobs[k]!.key;
      byKey.set(key, [...(byKey.get(key) ?? []), r.jobId]);
    });
  }
  await producer.disconnect();
  return { jobIds, byKey };
}
