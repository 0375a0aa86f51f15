import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../../src/config/errors.js';
import { defineWorker, type WorkerOptions } from '../../../src/worker/options.js';
import { Worker } from '../../../src/worker/worker.js';

const base: WorkerOptions = {
  brokers: ['127.0.0.1:9092'],
  registry: { url: 'http://127.0.0.1:8081/apis/ccompat/v7' },
  topic: 'payments',
  groupId: 'g',
  handler: async () => undefined,
};

function errorOf(options: unknown): ConfigError {
  try {
    new Worker(options as WorkerOptions);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error('expected a ConfigError');
}

describe('worker options', () => {
  it('accepts a minimal definition and fills the defaults', () => {
    const w = new Worker(base);
    expect(w.options.concurrency).toBe(16);
    expect(w.options.ordering).toBe('key');
    expect(w.options.commitIntervalMs).toBe(1000);
    expect(w.options.retry.tiers).toEqual([1000, 10_000, 60_000]);
    expect(w.topics.tiers).toEqual(['payments.retry.1', 'payments.retry.2', 'payments.retry.3']);
    expect(w.topics.dlq).toBe('payments.dlq');
  });

  it.each([
    [{ concurrency: 0 }, 'concurrency', /worker options: concurrency: .*>0|too small/i],
    [{ ordering: 'by-key' }, 'ordering', /ordering: .*"key"/],
    [
      { retry: { tiers: ['1s', '10s', 'soon'] } },
      'retry.tiers[2]',
      /retry\.tiers\[2\]: expected a duration like "10s", got "soon"/,
    ],
    [{ limiter: { max: 10 } }, 'limiter.durationMs', /limiter\.durationMs/],
    [
      { heartbeatIntervalMs: 40_000 },
      'heartbeatIntervalMs',
      /heartbeatIntervalMs: must be lower than sessionTimeoutMs/,
    ],
    [{ handler: 'nope' }, 'handler', /handler: expected a function/],
    [{ registry: { url: 'not a url' } }, 'registry.url', /registry\.url/],
    [{ brokers: ['localhost'] }, 'brokers[0]', /brokers\[0\]: expected host:port/],
    [{ concurency: 3 }, '', /[Uu]nrecognized key.*concurency/],
    [{ handler: undefined }, 'handler', /handler: expected a function .*or a batchHandler/],
    [
      { batchHandler: async (): Promise<undefined> => undefined },
      'batchHandler',
      /batchHandler: give handler or batchHandler, not both/,
    ],
    [{ batch: { maxSize: 10 } }, 'batch', /batch: batch options need a batchHandler/],
    [
      { handler: undefined, batchHandler: (): number => 1, batch: { maxSize: 0 } },
      'batch.maxSize',
      /batch\.maxSize/,
    ],
    [
      { handler: undefined, batchHandler: (): number => 1, batch: { maxWaitMs: '2 weeks' } },
      'batch.maxWaitMs',
      /batch\.maxWaitMs/,
    ],
    [
      { handler: undefined, batchHandler: (): number => 1, batch: { size: 5 } },
      'batch',
      /[Uu]nrecognized key.*size/,
    ],
  ])('rejects %j at construction, naming %s', (patch, path, message) => {
    const error = errorOf({ ...base, ...patch });
    expect(error.path).toBe(path);
    expect(error.message).toMatch(message);
    expect(error.message).not.toContain('\n');
  });

  it('defineWorker validates too, and may leave the connection to the CLI', () => {
    expect(() =>
      defineWorker({ topic: 'payments', groupId: 'g', handler: async () => undefined }),
    ).not.toThrow();
    expect(() =>
      defineWorker({ topic: 'payments', groupId: 'g', handler: async () => undefined, concurrency: -1 }),
    ).toThrow(/concurrency/);
  });

  it('a batchHandler instead of handler: batch defaults, or the given shape (durations as strings)', () => {
    const { handler: _, ...rest } = base;
    const w = new Worker({ ...rest, batchHandler: async () => undefined });
    expect(w.options.batch).toBeUndefined();
    const shaped = new Worker({
      ...rest,
      batchHandler: async () => undefined,
      batch: { maxSize: 500, maxWaitMs: '50ms' },
    });
    expect(shaped.options.batch).toEqual({ maxSize: 500, maxWaitMs: 50 });
    expect(
      defineWorker({ topic: 'p', groupId: 'g', batchHandler: () => undefined, batch: { maxSize: 5 } }).batch,
    ).toEqual({
      maxSize: 5,
    });
  });
});

describe('exactlyOnce options', () => {
  it('is off by default and on with relaxed key order', () => {
    expect(new Worker(base).options.exactlyOnce).toBe(false);
    const w = new Worker({ ...base, exactlyOnce: true, retry: { ordering: 'relaxed' } });
    expect(w.options.exactlyOnce).toBe(true);
    expect(new Worker({ ...base, exactlyOnce: true, retry: { tiers: [] } }).options.exactlyOnce).toBe(true);
  });

  it('refuses strict key order in one line naming the field, with a handler or a batch handler', () => {
    const strict = errorOf({ ...base, exactlyOnce: true });
    expect(strict.path).toBe('exactlyOnce');
    expect(strict.message).toMatch(/^worker options: exactlyOnce: .*retry\.ordering: 'relaxed'$/);
    expect(strict.message).not.toContain('\n');
    const { handler: _h, ...noHandler } = base;
    const batchStrict = errorOf({ ...noHandler, batchHandler: async () => undefined, exactlyOnce: true });
    expect(batchStrict.message).toMatch(/^worker options: exactlyOnce: .*retry\.ordering: 'relaxed'$/);
    expect(errorOf({ ...base, exactlyOnce: 'yes' }).path).toBe('exactlyOnce');
  });

  it('takes a batch handler with relaxed key order (its ctx.enqueue names the job: { for: job })', () => {
    const { handler: _h, ...noHandler } = base;
    const w = new Worker({
      ...noHandler,
      batchHandler: async () => undefined,
      exactlyOnce: true,
      retry: { ordering: 'relaxed' },
    });
    expect(w.options.exactlyOnce).toBe(true);
    expect(w.options.batchHandler).toBeDefined();
  });
});
