import type { PartitionTracker } from '../partition-tracker.js';

/**
 * Offsets in increasing order; a removed one stays until the front passes it or the dead outnumber
 * the live (a read-back removes mostly at the front, so removal is O(1) instead of a splice of up
 * to `maxDeferred` numbers per record).
 */
class OffsetQueue {
  items: number[] = [];
  head = 0;
  private dead = 0;

  constructor(private readonly live: (offset: number) => boolean) {}

  push(offset: number): void {
    this.items.push(offset);
  }

  removed(): void {
    this.dead++;
    while (this.head < this.items.length && !this.live(this.items[this.head]!)) {
      this.head++;
      this.dead--;
    }
    if (this.dead > 1024 && this.dead * 2 > this.items.length - this.head) {
      this.items = this.items.slice(this.head).filter(this.live);
      this.head = 0;
      this.dead = 0;
    }
  }

  first(): number | undefined {
    return this.items[this.head];
  }

  get empty(): boolean {
    return this.head >= this.items.length;
  }

  /** Live offsets (the removed ones still in the array are counted in `dead`). */
  get size(): number {
    return this.items.length - this.head - this.dead;
  }
}

/**
 * Deferred records of one partition ownership (fairness/deferral.ts), indexed three ways: all in
 * offset order (the commit floor), per tenant (a read-back visits only the tenants with room) and
 * per key (a key's records are read back in offset order).
 */
export class Deferred {
  readonly records = new Map<number, { tenant: string; key: string | null }>();
  private readonly all: OffsetQueue;
  /** Per tenant, its deferred offsets in order. */
  readonly tenants = new Map<string, OffsetQueue>();
  /** Per key, its deferred offsets in order (short: a key's records in one partition's deferral). */
  readonly keys = new Map<string, number[]>();
  reading = false;
  private readonly live = (offset: number) => this.records.has(offset);

  constructor(readonly tracker: PartitionTracker) {
    this.all = new OffsetQueue(this.live);
  }

  get size(): number {
    return this.records.size;
  }

  add(offset: number, tenant: string, key: string | null): void {
    this.records.set(offset, { tenant, key });
    this.all.push(offset);
    this.tracker.deferredFloor = this.all.first();
    let q = this.tenants.get(tenant);
    if (!q) {
      q = new OffsetQueue(this.live);
      this.tenants.set(tenant, q);
    }
    q.push(offset);
    if (key !== null) {
      const k = this.keys.get(key);
      if (k) k.push(offset);
      else this.keys.set(key, [offset]);
    }
  }

  remove(offset: number): void {
    const r = this.records.get(offset);
    if (!r) return;
    this.records.delete(offset);
    this.all.removed();
    this.tracker.deferredFloor = this.all.first();
    const q = this.tenants.get(r.tenant)!;
    q.removed();
    if (q.empty) this.tenants.delete(r.tenant);
    if (r.key !== null) {
      const k = this.keys.get(r.key)!;
      if (k[0] === offset) k.shift();
      else k.splice(k.indexOf(offset), 1);
      if (k.length === 0) this.keys.delete(r.key);
    }
  }

  /**
   * The oldest deferred offsets of the tenants in `left` (each at most its count there), at most
   * `max`, in offset order; a key's records in its order: a key whose earlier record is not
   * picked (its tenant has no room, or ran out of it) stops there.
   */
  oldest(left: Map<string, number>, max: number): number[] {
    const cursors = [...left.keys()].map((tenant) => {
      const q = this.tenants.get(tenant)!;
      return { tenant, q, i: q.head };
    });
    const blocked = new Set<string>();
    const pickedOfKey = new Map<string, number>();
    const picks: number[] = [];
    while (left.size > 0 && picks.length < max) {
      let best: (typeof cursors)[number] | undefined;
      for (const c of cursors) {
        if (!left.has(c.tenant)) continue;
        while (c.i < c.q.items.length && !this.records.has(c.q.items[c.i]!)) c.i++;
        if (c.i < c.q.items.length && (!best || c.q.items[c.i]! < best.q.items[best.i]!)) best = c;
      }
      if (!best) break;
      const offset = best.q.items[best.i++]!;
      const { key } = this.records.get(offset)!;
      if (key !== null) {
        if (blocked.has(key)) continue;
        const p = pickedOfKey.get(key) ?? 0;
        if (this.keys.get(key)![p] !== offset) {
          blocked.add(key);
          continue;
        }
        pickedOfKey.set(key, p + 1);
      }
      const n = left.get(best.tenant)!;
      if (n > 1) left.set(best.tenant, n - 1);
      else left.delete(best.tenant);
      picks.push(offset);
    }
    return picks;
  }
}
