import { enqueuePaymentBacklog, type Payment, paymentSchema } from '../../chaos/payments.js';
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
