import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../../src/config/errors.js';
import { parseRate } from '../../../../src/worker/fairness/options.js';
import { resolveWorkerOptions, type WorkerOptions } from '../../../../src/worker/options.js';

const base: WorkerOptions = {
  brokers: ['127.0.0.1:9092'],
  registry: { url: 'http://127.0.0.1:8081/apis/ccompat/v7' },
  topic: 'payments',
  groupId: 'g',
  handler: async () => undefined,
};

function messageOf(extra: unknown): string {
  try {
    resolveWorkerOptions({ ...base, ...(extra as object) } as unknown as WorkerOptions<never>);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    expect(message).not.toContain('\n');
    return message;
  }
  throw new Error('expected a ConfigError');
}

describe('tenant and limits options', () => {
  it.each([
    ['50/s', { max: 50, perMs: 1000 }],
    ['10/min', { max: 10, perMs: 60_000 }],
    ['1000/h', { max: 1000, perMs: 3_600_000 }],
    ['5/10s', { max: 5, perMs: 10_000 }],
    ['0.5/s', { max: 0.5, perMs: 1000 }],
    [' 20 / second ', { max: 20, perMs: 1000 }],
  ])('parses the rate %s', (text, rate) => {
    expect(parseRate(text)).toEqual(rate);
  });

  it.each(['fast', '0/s', '-1/s', '10/fortnight', '10', '/s', '10/0s'])('refuses the rate %s', (text) => {
    expect(parseRate(text)).toBeUndefined();
  });

  it('resolves a full limits block with its defaults', () => {
    const o = resolveWorkerOptions({
      ...base,
      tenant: (job: { key: string | null }) => String(job.key),
      limits: {
        perKey: { rate: '50/s', concurrency: 2 },
        perTenant: { rate: '200/s', concurrency: 16, weights: { gold: 4 } },
      },
    } as unknown as WorkerOptions<never>);
    expect(o.limits?.perKey?.rate).toEqual({ max: 50, perMs: 1000 });
    expect(o.limits?.perTenant?.weights).toEqual({ gold: 4 });
    expect(o.limits?.onStoreError).toBe('open');
    expect(o.limits?.fair).toBe(true);
    expect(o.limits?.maxDeferred).toBe(10_000);
    expect(o.limits?.metricsTopTenants).toBe(10);
  });

  it.each([
    [
      { limits: { perKey: { rate: 'fast' } } },
      /^worker options: limits\.perKey\.rate: expected a rate like "50\/s".*"fast"/,
    ],
    [{ limits: { perTenant: { rate: '0/s' } } }, /limits\.perTenant\.rate: expected a rate/],
    [{ limits: { perKey: { concurrency: 0 } } }, /limits\.perKey\.concurrency/],
    [
      { limits: { perTenant: { weights: { gold: 0 } } } },
      /limits\.perTenant\.weights\.gold: a weight must be > 0/,
    ],
    [{ limits: { perTenant: { weight: {} } } }, /limits\.perTenant.*weight/],
    [{ limits: { store: {} } }, /limits\.store: expected a LimitStore/],
    [
      { limits: { store: { take: async () => ({ granted: 1, retryInMs: 0 }) } } },
      /limits\.store: .*perTenant\.rate/,
    ],
    [{ limits: { onStoreError: 'maybe' } }, /limits\.onStoreError/],
    [{ tenant: 'merchantId' }, /tenant: expected a function/],
    [
      { handler: undefined, batchHandler: async () => undefined, limits: { perKey: { concurrency: 1 } } },
      /limits: tenants and limits work with handler/,
    ],
  ])('names the field: %j', (extra, message) => {
    expect(messageOf(extra)).toMatch(message);
  });
});
