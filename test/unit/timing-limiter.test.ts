import { describe, expect, it } from 'vitest';
import { RateLimiter } from '../../src/timing/limiter.js';

describe('RateLimiter', () => {
  it('allows max starts per window and refills continuously', () => {
    let now = 0;
    const l = new RateLimiter(10, 1000, () => now);
    let taken = 0;
    while (l.tryTake()) taken++;
    expect(taken).toBe(10);
    expect(l.msUntilNext()).toBe(100);
    now = 250;
    expect([l.tryTake(), l.tryTake(), l.tryTake()]).toEqual([true, true, false]);
    now = 10_000;
    taken = 0;
    while (l.tryTake()) taken++;
    expect(taken).toBe(10); // the bucket never holds more than max
  });
});
