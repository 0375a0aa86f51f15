import { Redis } from 'ioredis';
import { z } from 'zod';
import { parseOptions } from '../../config/validate.js';
import {
  type RedisConnectionOptions,
  redisClientOptions,
  redisConnectionFields,
} from '../../idempotency/redis-store.js';
import type { LimitStore } from './limit-store.js';
import type { Rate } from './options.js';

/** Connection settings of a {@link RedisLimitStore}. */
export interface RedisLimitStoreOptions extends RedisConnectionOptions {
  /** A command that takes longer fails (the worker then fails open or closed, `limits.onStoreError`). @defaultValue 1000 */
  socketTimeoutMs?: number;
}

const schema = z
  .object({ ...redisConnectionFields, socketTimeoutMs: z.number().int().positive().default(1000) })
  .strict();

// A token bucket in one hash (tokens, last refill in ms of the Redis clock, so workers' clocks do
// not matter): refill, grant up to ARGV[3] whole tokens, and say when the next one is due.
const TAKE = `
local max = tonumber(ARGV[1])
local per = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(b[1]) or max
local at = tonumber(b[2]) or now
if now > at then tokens = math.min(max, tokens + (now - at) * max / per) end
local granted = math.min(want, math.floor(tokens))
if granted < 0 then granted = 0 end
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(per) * 2 + 1000)
local wait = 0
if granted < want then wait = math.ceil((1 - (tokens - math.floor(tokens))) * per / max) end
return { granted, wait }`;

type ScriptClient = Redis & {
  strandTake(key: string, max: number, per: number, want: number): Promise<[number, number]>;
};

/**
 * Per-tenant token buckets on Redis, shared by every worker of a group (`limits.store`): one
 * script call refills and takes atomically, timed by the Redis server's clock. Commands fail fast
 * while Redis is away (no offline queue); the worker then fails open or closed as
 * `limits.onStoreError` says.
 */
export class RedisLimitStore implements LimitStore {
  private readonly client: ScriptClient;
  /** Resolves once the first connection is up (a call before it would fail: no offline queue). */
  private readonly connected: Promise<unknown>;

  constructor(options: RedisLimitStoreOptions = {}) {
    const o = parseOptions(schema, options, 'redis limit store');
    this.client = new Redis(redisClientOptions(o)) as ScriptClient;
    this.client.on('error', () => undefined); // surfaced per call (the worker logs it once)
    this.client.defineCommand('strandTake', { numberOfKeys: 1, lua: TAKE });
    const client = this.client;
    this.connected = new Promise((resolve) => {
      client.once('ready', resolve);
      setTimeout(resolve, o.connectTimeoutMs).unref();
    });
  }

  async take(name: string, want: number, rate: Rate): Promise<{ granted: number; retryInMs: number }> {
    if (this.client.status !== 'ready') await this.connected;
    const [granted, retryInMs] = await this.client.strandTake(name, rate.max, rate.perMs, want);
    return { granted: Number(granted), retryInMs: Number(retryInMs) };
  }

  async close(): Promise<void> {
    await this.client.quit().catch(() => this.client.disconnect());
  }
}
