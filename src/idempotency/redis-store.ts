import { Redis, type RedisOptions } from 'ioredis';
import { z } from 'zod';
import { parseOptions, tlsSchema } from '../config/validate.js';
import { type BeginResult, type IdempotencyStore, StoreUnavailableError } from './store.js';

/** Where a Redis is and how to reach it (the idempotency store's and the limit store's). */
export interface RedisConnectionOptions {
  /** @defaultValue `'127.0.0.1'` */
  host?: string;
  /** @defaultValue 6379 */
  port?: number;
  /** @defaultValue 0 */
  db?: number;
  username?: string;
  /** Never logged. */
  password?: string;
  /** TLS: `true` for the system CAs, or explicit PEMs. */
  tls?: boolean | { ca?: string; cert?: string; key?: string; rejectUnauthorized?: boolean };
  /** @defaultValue 2000 */
  connectTimeoutMs?: number;
}

/** Connection settings of a {@link RedisIdempotencyStore}, as Redis users configure them. */
export interface RedisStoreOptions extends RedisConnectionOptions {
  /** Connections used round-robin (each multiplexes commands). @defaultValue 2 */
  poolSize?: number;
  /** A command that takes longer fails (the store is then treated as unavailable). @defaultValue 2000 */
  socketTimeoutMs?: number;
  /** Retry a command once on a timeout before failing it. @defaultValue true */
  retryOnTimeout?: boolean;
  /** Key prefix. @defaultValue `'strand:idem:'` */
  keyPrefix?: string;
}

/** The connection fields of a Redis-backed store's options (this one's and `RedisLimitStore`'s). */
export const redisConnectionFields = {
  host: z.string().min(1).default('127.0.0.1'),
  port: z.number().int().min(1).max(65535).default(6379),
  db: z.number().int().min(0).default(0),
  username: z.string().optional(),
  password: z.string().optional(),
  tls: tlsSchema.optional(),
  connectTimeoutMs: z.number().int().positive().default(2000),
};

const schema = z
  .object({
    ...redisConnectionFields,
    poolSize: z.number().int().min(1).max(64).default(2),
    socketTimeoutMs: z.number().int().positive().default(2000),
    retryOnTimeout: z.boolean().default(true),
    keyPrefix: z.string().default('strand:idem:'),
  })
  .strict();

// Values: "L:<owner>" for a lease, "D:<owner>" for a done marker. Every change checks the owner.
const BEGIN = `
local v = redis.call('GET', KEYS[1])
if not v then redis.call('SET', KEYS[1], 'L:' .. ARGV[1], 'PX', ARGV[2]) return 'acquired' end
if string.sub(v, 1, 2) == 'D:' then return 'completed' end
if v == 'L:' .. ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 'acquired' end
return 'busy'`;
const RENEW = `
if redis.call('GET', KEYS[1]) == 'L:' .. ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`;
const COMPLETE = `
local v = redis.call('GET', KEYS[1])
if v and v ~= 'L:' .. ARGV[1] then return 0 end
redis.call('SET', KEYS[1], 'D:' .. ARGV[1], 'PX', ARGV[2])
return 1`;
const RELEASE = `
if redis.call('GET', KEYS[1]) == 'L:' .. ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

/**
 * ioredis options for a store: commands fail fast while disconnected (no offline queue, no retries
 * per command) so the caller decides what a missing answer means; reconnects back off to 2 s.
 */
export function redisClientOptions(o: {
  host: string;
  port: number;
  db: number;
  username?: string | undefined;
  password?: string | undefined;
  tls?: z.output<typeof tlsSchema> | undefined;
  socketTimeoutMs: number;
  connectTimeoutMs: number;
}): RedisOptions {
  return {
    host: o.host,
    port: o.port,
    db: o.db,
    ...(o.username ? { username: o.username } : {}),
    ...(o.password ? { password: o.password } : {}),
    ...(o.tls ? { tls: o.tls === true ? {} : o.tls } : {}),
    commandTimeout: o.socketTimeoutMs,
    connectTimeout: o.connectTimeoutMs,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    lazyConnect: false,
    retryStrategy: (times) => Math.min(100 * 2 ** times, 2000),
  };
}

type ScriptClient = Redis & {
  strandBegin(key: string, owner: string, ms: number): Promise<string>;
  strandRenew(key: string, owner: string, ms: number): Promise<number>;
  strandComplete(key: string, owner: string, ms: number): Promise<number>;
  strandRelease(key: string, owner: string): Promise<number>;
};

/**
 * Idempotency store on Redis: a lease per job id (`SET NX PX` semantics in a script keyed by the
 * lease owner), turned into a done marker kept for `retainMs`. Fails closed: when Redis does not
 * answer, calls throw `StoreUnavailableError` and the worker does not run the job.
 */
export class RedisIdempotencyStore implements IdempotencyStore {
  private readonly clients: ScriptClient[];
  private readonly prefix: string;
  private readonly retryOnTimeout: boolean;
  private next = 0;

  constructor(options: RedisStoreOptions = {}) {
    const o = parseOptions(schema, options, 'redis store');
    this.prefix = o.keyPrefix;
    this.retryOnTimeout = o.retryOnTimeout;
    const redisOptions = redisClientOptions(o);
    this.clients = Array.from({ length: o.poolSize }, () => {
      const c = new Redis(redisOptions) as ScriptClient;
      c.on('error', () => undefined); // surfaced per command as StoreUnavailableError
      c.defineCommand('strandBegin', { numberOfKeys: 1, lua: BEGIN });
      c.defineCommand('strandRenew', { numberOfKeys: 1, lua: RENEW });
      c.defineCommand('strandComplete', { numberOfKeys: 1, lua: COMPLETE });
      c.defineCommand('strandRelease', { numberOfKeys: 1, lua: RELEASE });
      return c;
    });
  }

  private async call<T>(what: string, fn: (c: ScriptClient) => Promise<T>): Promise<T> {
    const client = this.clients[this.next++ % this.clients.length]!;
    try {
      return await fn(client);
    } catch (error) {
      const timeout = /timed? ?out/i.test((error as Error).message);
      if (timeout && this.retryOnTimeout) {
        try {
          return await fn(client);
        } catch (again) {
          throw new StoreUnavailableError(`redis ${what} failed: ${(again as Error).message}`, {
            cause: again,
          });
        }
      }
      throw new StoreUnavailableError(`redis ${what} failed: ${(error as Error).message}`, { cause: error });
    }
  }

  async begin(jobId: string, owner: string, leaseMs: number): Promise<BeginResult> {
    return (await this.call('begin', (c) =>
      c.strandBegin(this.prefix + jobId, owner, leaseMs),
    )) as BeginResult;
  }

  async renew(jobId: string, owner: string, leaseMs: number): Promise<boolean> {
    return (await this.call('renew', (c) => c.strandRenew(this.prefix + jobId, owner, leaseMs))) === 1;
  }

  async complete(jobId: string, owner: string, retainMs: number): Promise<void> {
    await this.call('complete', (c) => c.strandComplete(this.prefix + jobId, owner, retainMs));
  }

  async release(jobId: string, owner: string): Promise<void> {
    await this.call('release', (c) => c.strandRelease(this.prefix + jobId, owner));
  }

  async close(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.quit().catch(() => c.disconnect())));
  }
}
