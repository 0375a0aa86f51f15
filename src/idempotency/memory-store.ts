import type { BeginResult, IdempotencyStore } from './store.js';

interface Entry {
  state: 'lease' | 'done';
  owner: string;
  expiresAt: number;
}

/**
 * In-process store (the default): leases and done markers with expiry, bounded in size. When
 * full, expired entries go first, then the oldest done markers; live leases are never evicted.
 * Only protects against duplicates seen by this process.
 */
export class MemoryIdempotencyStore implements IdempotencyStore {
  private readonly entries = new Map<string, Entry>();

  constructor(private readonly opts: { maxEntries?: number; now?: () => number } = {}) {}

  private now(): number {
    return this.opts.now?.() ?? Date.now();
  }

  get size(): number {
    return this.entries.size;
  }

  private live(jobId: string): Entry | undefined {
    const e = this.entries.get(jobId);
    if (e && e.expiresAt <= this.now()) {
      this.entries.delete(jobId);
      return undefined;
    }
    return e;
  }

  private makeRoom(): void {
    const max = this.opts.maxEntries ?? 100_000;
    if (this.entries.size < max) return;
    const now = this.now();
    for (const [id, e] of this.entries) if (e.expiresAt <= now) this.entries.delete(id);
    // Map iteration is insertion order: the first done markers are the oldest.
    for (const [id, e] of this.entries) {
      if (this.entries.size < max) break;
      if (e.state === 'done') this.entries.delete(id);
    }
  }

  async begin(jobId: string, owner: string, leaseMs: number): Promise<BeginResult> {
    const e = this.live(jobId);
    if (e?.state === 'done') return 'completed';
    if (e && e.owner !== owner) return 'busy';
    if (!e) this.makeRoom();
    this.entries.delete(jobId);
    this.entries.set(jobId, { state: 'lease', owner, expiresAt: this.now() + leaseMs });
    return 'acquired';
  }

  async renew(jobId: string, owner: string, leaseMs: number): Promise<boolean> {
    const e = this.live(jobId);
    if (e?.state !== 'lease' || e.owner !== owner) return false;
    e.expiresAt = this.now() + leaseMs;
    return true;
  }

  async complete(jobId: string, owner: string, retainMs: number): Promise<void> {
    const e = this.live(jobId);
    if (e && e.owner !== owner) return;
    this.entries.delete(jobId);
    this.entries.set(jobId, { state: 'done', owner, expiresAt: this.now() + retainMs });
  }

  async release(jobId: string, owner: string): Promise<void> {
    const e = this.live(jobId);
    if (e?.state === 'lease' && e.owner === owner) this.entries.delete(jobId);
  }
}
