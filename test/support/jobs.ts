import { enqueuePaymentBacklog, type Payment, paymentProducer, paymentSchema } from '../../chaos/payments.js';
import { stack } from './helpers.js';

export { type Payment, paymentSchema };

/**
 * Enqueues `count` payments over `keys` accounts; `sequence` is the per-account order (1, 2, ...),
 * so a test can check per-key order from the data alone. Returns the job ids in enqueue order.
 */
export async function enqueuePayments(
  topic: string,
  count: number,
  keys: number,
  opts: { memo?: (i: number) => string | null; batch?: number } = {},
): Promise<{ jobIds: string[] }> {
  return { jobIds: await enqueuePaymentBacklog(stack(), topic, count, keys, opts) };
}

/**
 * Payments of `tenant` (their memo, which the tenant tests' workers take as the tenant) on `keys`
 * keys of its own (`<tenant>-<n>`), `sequence` per key from 1.
 */
export async function enqueueTenant(
  topic: string,
  tenant: string,
  count: number,
  keys: number,
): Promise<void> {
  const producer = await paymentProducer(stack(), topic);
  const seq = new Map<string, number>();
  const jobs = Array.from({ length: count }, (_, i) => {
    const key = `${tenant}-${i % keys}`;
    const sequence = (seq.get(key) ?? 0) + 1;
    seq.set(key, sequence);
    const data: Payment = {
      paymentId: `${tenant}-p${i}`,
      accountId: key,
      amountCents: i,
      currency: 'EUR',
      sequence,
      createdAt: Date.now(),
      memo: tenant,
    };
    return { key, data };
  });
  for (let i = 0; i < jobs.length; i += 500) await producer.enqueueMany(jobs.slice(i, i + 500));
  await producer.disconnect();
}
