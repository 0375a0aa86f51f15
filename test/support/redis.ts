import { inject } from 'vitest';
import { skipWhenMissing } from './optional.js';

/**
 * The Redis the global setup found or started, or undefined. Worker processes the tests start read
 * its port from STRAND_TEST_REDIS_PORT, set here.
 */
export function testRedis(): { host: string; port: number } | undefined {
  const r = inject('redis');
  if ('missing' in r) return undefined;
  process.env.STRAND_TEST_REDIS_PORT = String(r.port);
  return r;
}

/** The test's Redis; without one the test is skipped with the reason (fails in CI: `skipWhenMissing`). */
export function needRedis(ctx: { skip: (note?: string) => never }): { host: string; port: number } {
  const r = testRedis();
  if (r) return r;
  skipWhenMissing(ctx, `needs Redis: ${(inject('redis') as { missing: string }).missing}`);
  throw new Error('unreachable: skipWhenMissing skips or throws');
}
