import { describe, expect, it } from 'vitest';
import { defineWorker } from '../../../src/worker/options.js';
import { Worker } from '../../../src/worker/worker.js';

interface Payment {
  accountId: string;
  amountCents: number;
}

// `npm run typecheck` checks the type side of these: the README's `new Worker(defineWorker({...}))`.
describe('new Worker(defineWorker({...}))', () => {
  it('compiles and constructs when the definition names a registry', () => {
    const worker = new Worker(
      defineWorker<Payment>({
        brokers: ['127.0.0.1:9092'],
        registry: { url: 'http://127.0.0.1:8081/apis/ccompat/v7' },
        topic: 'payments',
        groupId: 'g',
        handler: async (job) => {
          job.data.amountCents satisfies number;
        },
      }),
    );
    expect(worker.options.registry.url).toBe('http://127.0.0.1:8081/apis/ccompat/v7');
    expect(worker.options.topic).toBe('payments');
  });

  it('a definition without a registry is for `strand worker` (which supplies it), not for new Worker', () => {
    const definition = defineWorker({ topic: 'payments', groupId: 'g', handler: () => undefined });
    // @ts-expect-error registry is missing: new Worker needs it
    expect(() => new Worker(definition)).toThrow(/registry/);
  });
});
