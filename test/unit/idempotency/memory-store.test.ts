import { describe, expect, it } from 'vitest';
import { MemoryIdempotencyStore } from '../../../src/idempotency/memory-store.js';

describe('MemoryIdempotencyStore', () => {
  it('leases, completes, and reports duplicates for the retention window', async () => {
    let now = 0;
    const s = new MemoryIdempotencyStore({ now: () => now });
    expect(await s.begin('j1', 'a', 1000)).toBe('acquired');
    expect(await s.begin('j1', 'b', 1000)).toBe('busy');
    await s.complete('j1', 'a', 5000);
    expect(await s.begin('j1', 'b', 1000)).toBe('completed');
    now = 5001;
    expect(await s.begin('j1', 'b', 1000)).toBe('acquired');
  });

  it('a lease expires after leaseMs, not before; only its owner may release or renew it', async () => {
    let now = 0;
    const s = new MemoryIdempotencyStore({ now: () => now });
    await s.begin('j', 'dead', 1000);
    await s.release('j', 'intruder');
    expect(await s.renew('j', 'intruder', 1000)).toBe(false);
    now = 999;
    expect(await s.begin('j', 'b', 1000)).toBe('busy');
    now = 1000;
    expect(await s.begin('j', 'b', 1000)).toBe('acquired');
    expect(await s.renew('j', 'b', 1000)).toBe(true);
    await s.release('j', 'b');
    expect(await s.begin('j', 'c', 1000)).toBe('acquired');
  });

  it('stays within its bound, evicting expired entries and then the oldest done markers, never live leases', async () => {
    let now = 0;
    const s = new MemoryIdempotencyStore({ maxEntries: 100, now: () => now });
    for (let i = 0; i < 50; i++) await s.begin(`lease-${i}`, 'w', 60_000);
    for (let i = 0; i < 200; i++) {
      await s.begin(`done-${i}`, 'w', 60_000);
      await s.complete(`done-${i}`, 'w', 60_000);
      now++;
    }
    expect(s.size).toBeLessThanOrEqual(100);
    for (let i = 0; i < 50; i++) expect(await s.begin(`lease-${i}`, 'other', 1000)).toBe('busy');
    expect(await s.begin('done-199', 'other', 1000)).toBe('completed');
  });
});
