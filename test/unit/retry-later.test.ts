import { describe, expect, it } from 'vitest';
import { defaultClassify, RetryLaterError } from '../../src/failure/errors.js';
import { OutcomeRouter, type RoutedRecord } from '../../src/failure/router.js';
import { HEADERS, headerString } from '../../src/headers.js';
import type { OutgoingRecord, ProducePort } from '../../src/ports.js';
import type { Clock } from '../../src/timing/clock.js';
import { delayBucketsFor } from '../../src/topology/delays.js';
import { topicNames } from '../../src/topology/topics.js';

describe('RetryLaterError checks its delay', () => {
  it('takes a finite number of milliseconds >= 0', () => {
    for (const delayMs of [0, 1, 1500.5, 3_600_000, 2 ** 31 + 1, Number.MAX_SAFE_INTEGER]) {
      const e = new RetryLaterError({ delayMs });
      expect(e.delayMs).toBe(delayMs);
      expect(defaultClassify(e)).toBe('retry-later');
    }
  });

  it('without a delay means "the first tier\'s delay" (from JavaScript, or to say no more than "later")', () => {
    expect(new RetryLaterError().delayMs).toBeUndefined();
    expect(new RetryLaterError({ message: 'busy' }).message).toBe('busy');
    expect(new RetryLaterError({ delayMs: undefined as unknown as number }).message).toBe('retry later');
  });

  it.each([
    [Number.NaN, 'NaN'],
    [-1, '-1'],
    [Number.POSITIVE_INFINITY, 'Infinity'],
    [Number.NEGATIVE_INFINITY, '-Infinity'],
    ['5000', 'the string "5000"'],
    [null, 'null'],
  ])(
    'refuses %s with a RangeError that says what it got (a programmer error: the job is dead-lettered with it)',
    (delayMs, shown) => {
      let error: unknown;
      try {
        new RetryLaterError({ delayMs: delayMs as number });
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(RangeError);
      expect((error as Error).message).toBe(
        `RetryLaterError: delayMs must be a finite number of milliseconds >= 0, got ${shown}`,
      );
      expect(defaultClassify(error)).toBe('non-retriable');
    },
  );
});

/** A clock that stands still, a producer that records what it was asked to send. */
function setup(opts: { buckets?: number[]; tiers?: number[] } = {}) {
  const tiers = opts.tiers ?? [1000, 60_000];
  const topics = topicNames('pay', tiers.length);
  if (opts.buckets) topics.delays = delayBucketsFor('pay', opts.buckets);
  const sent: { topic: string; message: OutgoingRecord }[] = [];
  const producer: ProducePort = {
    send: async (batch) => {
      for (const b of batch) for (const message of b.messages) sent.push({ topic: b.topic, message });
    },
  };
  const now = 1_000_000;
  const clock: Clock = {
    now: () => now,
    setTimeout: (fn) => {
      queueMicrotask(fn);
      return {};
    },
    clearTimeout: () => undefined,
  };
  const warnings: { obj: object; msg: string }[] = [];
  const router = new OutcomeRouter(producer, topics, 'g', clock, tiers, {
    warn: (obj, msg) => warnings.push({ obj, msg }),
  });
  const item: RoutedRecord = {
    topic: 'pay',
    partition: 3,
    offset: '42',
    key: 'k',
    value: Buffer.from('v'),
    headers: {},
    rawHeaders: { [HEADERS.jobId]: 'job-1' },
  };
  const header = (i: number, name: string) => headerString(sent[i]?.message.headers, name);
  return { router, sent, warnings, item, now, header };
}

const retryLater = (delayMs: number) => ({ tier: 2, nextAttempt: 1, delayMs, retryLater: true });

describe('the router never makes a record wait in a tier longer than the tier', () => {
  it('a delay within the tier: the tier, due after the delay', async () => {
    const { router, sent, item, now, header } = setup({ buckets: [1000, 60_000, 3_600_000] });
    const route = await router.toTier(item, new Error('x'), retryLater(45_000));
    expect(route).toEqual({ kind: 'tier', tier: 2, topic: 'pay.retry.2', dueAt: now + 45_000 });
    expect(sent.map((s) => s.topic)).toEqual(['pay.retry.2']);
    expect(header(0, HEADERS.dueAt)).toBe(String(now + 45_000));
    expect(header(0, HEADERS.holdUntil)).toBeUndefined();
  });

  it('longer than the last tier, with delay buckets: the largest bucket that fits, then the tier when due', async () => {
    const { router, sent, item, now, header, warnings } = setup({ buckets: [1000, 60_000, 3_600_000] });
    const route = await router.toTier(item, new Error('x'), retryLater(2 * 3_600_000), undefined, true);
    expect(route).toEqual({
      kind: 'tier',
      tier: 2,
      topic: 'pay.retry.2',
      dueAt: now + 7_200_000,
      delayBucket: 'pay.delay.1h',
    });
    expect(sent.map((s) => s.topic)).toEqual(['pay.delay.1h']);
    expect(header(0, HEADERS.dueAt)).toBe(String(now + 7_200_000));
    expect(header(0, HEADERS.holdUntil)).toBe(String(now + 3_600_000));
    expect(header(0, HEADERS.retryTier)).toBe('2');
    // Everything a tier record carries travels with it: the hop count, the parked key, the job id.
    expect(header(0, HEADERS.retryLater)).toBe('1');
    expect(header(0, HEADERS.parksKey)).toBe('1');
    expect(header(0, HEADERS.jobId)).toBe('job-1');
    expect(header(0, HEADERS.group)).toBe('g');
    expect(warnings).toEqual([]);
  });

  it('a delay past 2^31 − 1 ms goes to the buckets like any other long one', async () => {
    const { router, sent, item, now, header } = setup({ buckets: [1000, 86_400_000] });
    await router.toTier(item, new Error('x'), retryLater(2 ** 31 + 5000));
    expect(sent.map((s) => s.topic)).toEqual(['pay.delay.1d']);
    expect(header(0, HEADERS.dueAt)).toBe(String(now + 2 ** 31 + 5000));
  });

  it('just above the last tier but below the smallest bucket: the 0 s bucket (the worker holds it until due)', async () => {
    const { router, sent, item, header } = setup({ tiers: [100, 500], buckets: [1000] });
    await router.toTier(item, new Error('x'), retryLater(800));
    expect(sent.map((s) => s.topic)).toEqual(['pay.delay.0s']);
    expect(header(0, HEADERS.retryTier)).toBe('2');
  });

  it('without delay buckets: the last tier with the longest tier delay, and one warning a minute saying how to get the full one', async () => {
    const { router, sent, item, now, header, warnings } = setup();
    const route = await router.toTier(item, new Error('x'), retryLater(3_600_000));
    expect(route).toEqual({ kind: 'tier', tier: 2, topic: 'pay.retry.2', dueAt: now + 60_000 });
    expect(sent.map((s) => s.topic)).toEqual(['pay.retry.2']);
    expect(header(0, HEADERS.dueAt)).toBe(String(now + 60_000));
    await router.toTier(item, new Error('x'), retryLater(2 ** 31 + 1));
    expect(header(1, HEADERS.dueAt)).toBe(String(now + 60_000));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.msg).toContain('strand topics create pay --delays');
    expect(warnings[0]!.obj).toMatchObject({ requestedMs: 3_600_000, tierDelayMs: 60_000 });
  });

  it('an ordinary tier hop is unchanged (its delay is the tier’s)', async () => {
    const { router, sent, item } = setup({ buckets: [1000] });
    await router.toTier(item, new Error('x'), {
      tier: 2,
      nextAttempt: 3,
      delayMs: 60_000,
      retryLater: false,
    });
    expect(sent.map((s) => s.topic)).toEqual(['pay.retry.2']);
  });
});
