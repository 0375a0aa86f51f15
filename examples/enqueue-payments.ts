/**
 * Enqueue a few payments. Run it with (after `npx strand topics create payments`):
 *   npx tsx examples/enqueue-payments.ts
 */
import { readFileSync } from 'node:fs';
import { JobProducer } from 'strand';

const producer = new JobProducer({
  brokers: (process.env.STRAND_BROKERS ?? '127.0.0.1:9092').split(','),
  registry: { url: process.env.STRAND_REGISTRY_URL ?? 'http://127.0.0.1:8081/apis/ccompat/v7' },
  topic: 'payments',
  schema: JSON.parse(readFileSync(new URL('../schemas/payment.avsc', import.meta.url), 'utf8')),
});

await producer.connect();
const results = await producer.enqueueMany(
  Array.from({ length: 10 }, (_, i) => ({
    key: `acct-${i % 3}`, // the ordering key: one account's payments run in order
    jobId: `payment-${i}`, // idempotency key: enqueueing it again will not apply it twice
    data: {
      paymentId: `payment-${i}`,
      accountId: `acct-${i % 3}`,
      amountCents: 1000 + i,
      currency: 'EUR',
      sequence: Math.floor(i / 3) + 1,
      createdAt: Date.now(),
      memo: null,
    },
  })),
);
console.log(results);
await producer.disconnect();
