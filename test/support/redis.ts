import { inject } from 'vitest';

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

/**
 * Skips the calling test with the reason when there is no Redis; in CI (`CI` set, where `.ci/run`
 * installs Redis) a missing Redis fails the test instead, so CI never passes by skipping.
 */
export function needRedis(ctx: { skip: (note?: string) => never }): { host: string; port: number } {
  const r = testRedis();
  if (r) return r;
  const reason = (inject('redis') as { missing: string }).missing;
  if (process.env.CI) throw new Error(`Redis needed: ${reason}`);
  return ctx.skip(`needs Redis: ${reason}`);
}
