/**
 * A worker module that makes its own RedisIdempotencyStore and RedisLimitStore (as a user's module
 * would), for `test/integration/worker-noise.test.ts`: `strand worker` must close both when the
 * worker cannot start, or their connections keep the process running. The topic comes from
 * STRAND_TEST_TOPIC.
 */
import { RedisIdempotencyStore } from '../../src/idempotency/redis-store.js';
import { RedisLimitStore } from '../../src/worker/fairness/redis-limit-store.js';
import { defineWorker } from '../../src/worker/options.js';

export default defineWorker({
  topic: process.env.STRAND_TEST_TOPIC ?? 'missing',
  groupId: `${process.env.STRAND_TEST_TOPIC ?? 'missing'}-g`,
  status: false,
  idempotency: {
    store: new RedisIdempotencyStore({
      host: '127.0.0.1',
      port: Number(process.env.STRAND_TEST_REDIS_PORT ?? 6379),
    }),
  },
  tenant: () => 'one',
  limits: {
    perTenant: { rate: '10/s' },
    store: new RedisLimitStore({
      host: '127.0.0.1',
      port: Number(process.env.STRAND_TEST_REDIS_PORT ?? 6379),
    }),
  },
  handler: () => undefined,
});
