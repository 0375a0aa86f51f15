import { describe, expect, it } from 'vitest';
import { DesiredReplicas } from '../../../src/lag/lag.js';

const opts = { targetLagPerReplica: 500, minReplicas: 3, maxReplicas: 50, scaleDownWindowMs: 60_000 };

describe('desired replicas', () => {
  it('is ceil(lag / target) above the minimum, clamped to min and max', () => {
    const d = new DesiredReplicas({ ...opts, scaleDownWindowMs: 0 });
    expect(d.raw(0)).toBe(3);
    expect(d.raw(1500)).toBe(3);
    expect(d.raw(1501)).toBe(4); // above the minimum: one more replica per started 500
    expect(d.raw(10_000)).toBe(20);
    expect(d.raw(25_001)).toBe(50);
    expect(d.raw(10_000_000)).toBe(50);
  });

  it('scales up at once and down only after the scale-down window held no higher value', () => {
    const d = new DesiredReplicas(opts);
    const t0 = 1_000_000;
    expect(d.update(1000, t0)).toBe(3);
    expect(d.update(10_000, t0 + 1000)).toBe(20); // up: immediately
    expect(d.update(0, t0 + 2000)).toBe(20); // lag gone, but 20 was asked for within the window
    expect(d.update(2600, t0 + 30_000)).toBe(20);
    expect(d.update(0, t0 + 61_000)).toBe(20); // the 20 at t0 + 1 s is exactly 60 s old: still in
    expect(d.update(0, t0 + 61_001)).toBe(6); // 20 left the window; 2,600 (6) at t0 + 30 s is the highest
    expect(d.update(0, t0 + 90_001)).toBe(3); // the window holds only zeros: the minimum
  });

  it('with no window follows the lag both ways', () => {
    const d = new DesiredReplicas({ ...opts, scaleDownWindowMs: 0 });
    expect(d.update(10_000, 1)).toBe(20);
    expect(d.update(0, 2)).toBe(3);
  });
});
