import type { LimitStore } from './limit-store.js';
import type { Rate } from './options.js';
import type { LocalTenantTokens, TenantTokens } from './tenant-queue.js';

/** Tokens granted by the store and not used within this time are let go (a late burst would overshoot). */
const GRANT_TTL_MS = 1000;
/** After a store failure, how long the fallback (open: local buckets; closed: none) lasts before it is asked again. */
const FAILURE_BACKOFF_MS = 1000;

/**
 * Per-tenant token buckets shared by the group through a {@link LimitStore}. The dispatch path
 * never waits for the store: it uses tokens already granted, and asks the store for a few more
 * (about 100 ms of the rate, at most what the tenant has waiting) in the background, waking the
 * dispatcher when they come. When the store fails: `open` uses the per-worker buckets, `closed`
 * starts none of the tenants' jobs, until the store answers again.
 */
export class SharedTenantTokens implements TenantTokens {
  private readonly granted = new Map<string, { n: number; at: number }>();
  private readonly asking = new Set<string>();
  private readonly retryAt = new Map<string, number>();
  private failingUntil = 0;
  private readonly batch: number;

  constructor(
    private readonly opts: {
      store: LimitStore;
      rate: Rate;
      bucketPrefix: string;
      onError: 'open' | 'closed';
      local: LocalTenantTokens;
      now: () => number;
      wake: () => void;
      failed: (error: unknown) => void;
    },
  ) {
    this.batch = Math.max(1, Math.floor((opts.rate.max * 100) / opts.rate.perMs));
  }

  private failing(): boolean {
    return this.opts.now() < this.failingUntil;
  }

  available(tenant: string, waiting: number): boolean {
    if (this.failing()) return this.opts.onError === 'open' && this.opts.local.available(tenant);
    const g = this.granted.get(tenant);
    if (g && g.n >= 1 && this.opts.now() - g.at < GRANT_TTL_MS) return true;
    this.ask(tenant, waiting);
    return false;
  }

  take(tenant: string): void {
    if (this.failing()) {
      this.opts.local.take(tenant);
      return;
    }
    const g = this.granted.get(tenant);
    if (!g) return;
    if (--g.n < 1) this.granted.delete(tenant);
  }

  msUntil(tenant: string): number | undefined {
    const now = this.opts.now();
    if (this.failing())
      return this.opts.onError === 'open' ? this.opts.local.msUntil(tenant) : this.failingUntil - now;
    if (this.asking.has(tenant)) return undefined;
    const at = this.retryAt.get(tenant);
    return at === undefined ? undefined : Math.max(1, at - now);
  }

  private ask(tenant: string, waiting: number): void {
    const { store, rate, now } = this.opts;
    if (this.asking.has(tenant) || (this.retryAt.get(tenant) ?? 0) > now()) return;
    this.asking.add(tenant);
    const want = Math.min(this.batch, Math.max(1, waiting));
    store.take(this.opts.bucketPrefix + tenant, want, rate).then(
      ({ granted, retryInMs }) => {
        this.asking.delete(tenant);
        if (granted > 0) {
          this.retryAt.delete(tenant);
          this.granted.set(tenant, { n: granted, at: now() });
        } else this.retryAt.set(tenant, now() + Math.max(1, retryInMs));
        this.opts.wake();
      },
      (error: unknown) => {
        this.asking.delete(tenant);
        this.failingUntil = now() + FAILURE_BACKOFF_MS;
        this.opts.failed(error);
        this.opts.wake();
      },
    );
  }
}
