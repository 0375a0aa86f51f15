import { RateLimiter } from '../../timing/limiter.js';
import { type ReadyQueue, type Schedulable, SeqHeap } from '../key-scheduler.js';
import type { Rate } from './options.js';

/** The tenant of jobs whose tenant is not known (no `tenant` function, or a release record). */
export const NO_TENANT = '';

/** Tokens of the tenants' rate buckets: local, or shared through a store (shared-buckets.ts). */
export interface TenantTokens {
  /** A token could be taken now (without taking it). */
  available(tenant: string, waiting: number): boolean;
  take(tenant: string): void;
  /** Milliseconds until a token may be there (undefined: it will wake the queue itself). */
  msUntil(tenant: string): number | undefined;
}

/** Per-worker token buckets, one per tenant (forgotten once full again). */
export class LocalTenantTokens implements TenantTokens {
  private readonly buckets = new Map<string, RateLimiter>();
  constructor(
    private readonly rate: Rate,
    private readonly now: () => number,
  ) {}
  private bucket(tenant: string): RateLimiter {
    let b = this.buckets.get(tenant);
    if (!b) {
      b = new RateLimiter(this.rate.max, this.rate.perMs, this.now);
      this.buckets.set(tenant, b);
    }
    return b;
  }
  available(tenant: string): boolean {
    return this.bucket(tenant).available() >= 1;
  }
  take(tenant: string): void {
    this.bucket(tenant).consume(1);
  }
  msUntil(tenant: string): number {
    return this.bucket(tenant).msUntilNext();
  }
  /** Drops full buckets (bounded memory for many tenants). */
  sweep(keep: (tenant: string) => boolean): void {
    for (const [tenant, b] of this.buckets)
      if (!keep(tenant) && b.available() >= this.rate.max) this.buckets.delete(tenant);
  }
}

interface Tenant<T extends Schedulable> {
  readonly name: string;
  readonly weight: number;
  readonly heap: SeqHeap<T>;
  deficit: number;
  running: number;
  /** In the round-robin list (it stays there, empty, until its turn comes: see `emptied`). */
  listed: boolean;
}

export interface TenantQueueOptions {
  weights?: Readonly<Record<string, number>> | undefined;
  /** Weighted round robin across tenants; false: oldest first across all (limits still hold). */
  fair: boolean;
  tenantConcurrency?: number | undefined;
  tenantTokens?: TenantTokens | undefined;
  keyConcurrency?: number | undefined;
  keyRate?: Rate | undefined;
  now: () => number;
  /** A job was held back by a limit (`queue_limited_total{limit}`). */
  limited?: (limit: 'key_rate' | 'key_concurrency' | 'tenant_rate' | 'tenant_concurrency') => void;
}

/**
 * The key scheduler's runnable jobs, by tenant: weighted deficit round robin across the tenants
 * with runnable jobs (each visit adds the tenant's weight to its deficit; each start costs 1), so a
 * tenant with a backlog gets its weighted share of the starts and no more; within a tenant, oldest
 * first. A job over a limit (its tenant's or its key's concurrency or rate) stays here: it holds no
 * slot, `pop` passes it over, and `wakeInMs` says when a token is due.
 */
export class TenantQueue<T extends Schedulable> implements ReadyQueue<T> {
  private readonly tenants = new Map<string, Tenant<T>>();
  /** Tenants with runnable jobs, in round-robin order; `cursor` is the one whose turn it is. */
  private active: Tenant<T>[] = [];
  private cursor = 0;
  private count = 0;
  private readonly counted = new WeakMap<T, Tenant<T>>();
  private readonly keyRunning = new Map<string, number>();
  private readonly keyBuckets = new Map<string, RateLimiter>();
  private readonly minWeight: number;
  private pops = 0;
  /** Set by the dispatcher: tokens came from a shared bucket (starts jobs again). */
  wake: (() => void) | undefined;
  /** Set by `pop` when it returned nothing for a rate: when to try again. */
  private wakeMs: number | undefined;

  constructor(private readonly opts: TenantQueueOptions) {
    this.minWeight = Math.min(1, ...Object.values(opts.weights ?? {}));
  }

  get size(): number {
    return this.count;
  }

  get all(): readonly T[] {
    return [...this.tenants.values()].flatMap((t) => t.heap.all);
  }

  /** Runnable jobs per tenant (for `queue_tenant_waiting`). */
  waitingByTenant(): Map<string, number> {
    const out = new Map<string, number>();
    for (const t of this.active) if (t.heap.size > 0) out.set(t.name, t.heap.size);
    return out;
  }

  /** Jobs of `tenant` started and not finished here. */
  runningOf(tenant: string): number {
    return this.tenants.get(tenant)?.running ?? 0;
  }

  private tenant(name: string): Tenant<T> {
    let t = this.tenants.get(name);
    if (!t) {
      t = {
        name,
        weight: this.opts.weights?.[name] ?? 1,
        heap: new SeqHeap<T>(),
        deficit: 0,
        running: 0,
        listed: false,
      };
      this.tenants.set(name, t);
    }
    return t;
  }

  push(item: T): void {
    const t = this.tenant(item.tenant ?? NO_TENANT);
    if (!t.listed) {
      t.listed = true;
      this.active.push(t);
    }
    t.heap.push(item);
    this.count++;
  }

  removeWhere(pred: (item: T) => boolean): T[] {
    const removed: T[] = [];
    for (const t of this.tenants.values()) removed.push(...t.heap.removeWhere(pred));
    this.count -= removed.length;
    for (const t of this.active) if (t.heap.size === 0) this.emptied(t);
    return removed;
  }

  /**
   * A tenant ran out of runnable jobs: its deficit goes (DRR) and its turn passes, but it keeps its
   * place in the list until the cursor comes round to it. A tenant that gets jobs again meanwhile
   * would otherwise join at the end, ahead of tenants that waited for this round's turn.
   */
  private emptied(t: Tenant<T>): void {
    t.deficit = 0;
    if (this.active[this.cursor] === t) this.cursor++;
  }

  /** The cursor reached an empty tenant: it leaves the list. */
  private leave(index: number): void {
    const t = this.active[index]!;
    this.active.splice(index, 1);
    t.listed = false;
    t.deficit = 0;
    if (index < this.cursor) this.cursor--;
    if (t.running === 0) this.tenants.delete(t.name);
  }

  /** Could tenant `t` start a job now (its concurrency and rate)? */
  private tenantOpen(t: Tenant<T>): boolean {
    const { tenantConcurrency, tenantTokens } = this.opts;
    if (tenantConcurrency !== undefined && t.running >= tenantConcurrency) {
      this.opts.limited?.('tenant_concurrency');
      return false;
    }
    if (tenantTokens && !tenantTokens.available(t.name, t.heap.size)) {
      this.opts.limited?.('tenant_rate');
      const ms = tenantTokens.msUntil(t.name);
      if (ms !== undefined) this.wakeAt(ms);
      return false;
    }
    return true;
  }

  private wakeAt(ms: number): void {
    this.wakeMs = this.wakeMs === undefined ? ms : Math.min(this.wakeMs, ms);
  }

  private keyBucket(key: string): RateLimiter {
    let b = this.keyBuckets.get(key);
    if (!b) {
      const r = this.opts.keyRate!;
      b = new RateLimiter(r.max, r.perMs, this.opts.now);
      this.keyBuckets.set(key, b);
    }
    return b;
  }

  private keyOpen(key: string | null): boolean {
    if (key === null) return true;
    const { keyConcurrency, keyRate } = this.opts;
    if (keyConcurrency !== undefined && (this.keyRunning.get(key) ?? 0) >= keyConcurrency) {
      this.opts.limited?.('key_concurrency');
      return false;
    }
    if (keyRate && this.keyBucket(key).available() < 1) {
      this.opts.limited?.('key_rate');
      this.wakeAt(this.keyBucket(key).msUntilNext());
      return false;
    }
    return true;
  }

  /** The oldest job of `t` whose key may start now. */
  private takeFrom(t: Tenant<T>): T | undefined {
    if (this.opts.keyConcurrency === undefined && !this.opts.keyRate) return t.heap.pop();
    const held: T[] = [];
    let found: T | undefined;
    for (let item = t.heap.pop(); item; item = t.heap.pop()) {
      if (this.keyOpen(item.key)) {
        found = item;
        break;
      }
      held.push(item);
    }
    for (const item of held) t.heap.push(item);
    return found;
  }

  pop(): T | undefined {
    this.wakeMs = undefined;
    if (this.count === 0) return undefined;
    if (++this.pops % 4096 === 0) this.sweep();
    return this.opts.fair ? this.popFair() : this.popOldest();
  }

  private popFair(): T | undefined {
    // Enough visits for the lightest weight to earn a start in every active tenant.
    const visits = this.active.length * (Math.ceil(1 / this.minWeight) + 1);
    for (let v = 0; v < visits && this.active.length > 0; v++) {
      if (this.cursor >= this.active.length) this.cursor = 0;
      const t = this.active[this.cursor]!;
      if (t.heap.size === 0) {
        this.leave(this.cursor);
        v--;
        continue;
      }
      if (!this.tenantOpen(t)) {
        this.cursor++;
        continue;
      }
      if (t.deficit < 1) {
        t.deficit += t.weight;
        if (t.deficit < 1) {
          this.cursor++;
          continue;
        }
      }
      const item = this.takeFrom(t);
      if (!item) {
        this.cursor++;
        continue;
      }
      this.started(t, item);
      return item;
    }
    return undefined;
  }

  /** Without fairness: the oldest job whose tenant and key may start. */
  private popOldest(): T | undefined {
    const order = this.active
      .filter((t) => t.heap.size > 0)
      .sort((a, b) => a.heap.all[0]!.seq - b.heap.all[0]!.seq);
    for (const t of order) {
      if (!this.tenantOpen(t)) continue;
      const item = this.takeFrom(t);
      if (item) {
        this.started(t, item);
        return item;
      }
    }
    return undefined;
  }

  private started(t: Tenant<T>, item: T): void {
    this.count--;
    t.deficit -= 1;
    t.running++;
    this.counted.set(item, t);
    this.opts.tenantTokens?.take(t.name);
    if (item.key !== null) {
      if (this.opts.keyConcurrency !== undefined)
        this.keyRunning.set(item.key, (this.keyRunning.get(item.key) ?? 0) + 1);
      if (this.opts.keyRate) this.keyBucket(item.key).consume(1);
    }
    if (t.heap.size === 0) this.emptied(t);
    else if (this.opts.fair && t.deficit < 1 && this.active[this.cursor] === t) this.cursor++;
  }

  /** A job `pop` handed out is over: its tenant's and key's running counts go down. */
  finished(item: T): void {
    const t = this.counted.get(item);
    if (!t) return;
    this.counted.delete(item);
    t.running--;
    if (t.running === 0 && !t.listed) this.tenants.delete(t.name);
    if (item.key !== null && this.opts.keyConcurrency !== undefined) {
      const n = (this.keyRunning.get(item.key) ?? 1) - 1;
      if (n > 0) this.keyRunning.set(item.key, n);
      else this.keyRunning.delete(item.key);
    }
  }

  /** After `pop` returned nothing while jobs wait on a rate: milliseconds until a token is due. */
  wakeInMs(): number | undefined {
    return this.wakeMs;
  }

  /** Full buckets of idle keys and tenants are forgotten (memory stays bounded by the active ones). */
  private sweep(): void {
    const max = this.opts.keyRate?.max ?? 0;
    for (const [key, b] of this.keyBuckets)
      if (!this.keyRunning.has(key) && b.available() >= max) this.keyBuckets.delete(key);
    const tokens = this.opts.tenantTokens;
    if (tokens instanceof LocalTenantTokens) tokens.sweep((name) => this.tenants.has(name));
  }
}
