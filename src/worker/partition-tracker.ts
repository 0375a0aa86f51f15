import { tpKey } from './work-item.js';

/**
 * Accepted offsets of one partition and which of them are done. The commit point is the first
 * accepted offset not yet done, or the last accepted + 1 when all are done. Offsets need not be
 * contiguous (compaction, transaction markers): only accepted offsets count.
 */
export class PartitionTracker {
  // A ring of accepted offsets in order, with a parallel done flag; the head advances past done ones.
  private offsets: number[] = [];
  private done: boolean[] = [];
  private head = 0;
  private lastAccepted = -1;
  private pending = 0;
  /** Jobs of this ownership in the worker's buffer (accepted, not finished; `JobBuffer`). */
  buffered = 0;

  /**
   * Offsets the previous owner finished above its commit point (from the commit metadata): they
   * are accepted as done without running again.
   */
  preloadedDone: Set<number> = new Set();

  /**
   * The last commit this ownership made (point and offset map). It lives on the tracker, not in a
   * map by partition, so a commit answered after the partition was revoked and assigned again can
   * never be taken for the new ownership's.
   */
  lastCommit: { point: number; metadata: string } | undefined;

  /**
   * What the group had committed when this ownership began, and what this ownership sent since
   * (the last few, acknowledged or not): `<offset>|<metadata>`. A partition kept across a
   * rebalance keeps this tracker only if the group's committed offset is one of these.
   */
  baseline = '-1|';
  readonly sent: string[] = [];

  /** The offset the group had committed when this ownership began (-1: none). */
  get baseOffset(): number {
    return Number(this.baseline.slice(0, this.baseline.indexOf('|')));
  }

  /** Notes a commit about to be sent. */
  noteSent(point: number, metadata: string): void {
    this.sent.push(`${point}|${metadata}`);
    if (this.sent.length > 16) this.sent.shift();
  }

  /** `tpKey(topic, partition)`, made once (every accepted job carries it). */
  readonly tp: string;

  constructor(
    readonly topic: string,
    readonly partition: number,
  ) {
    this.tp = tpKey(topic, partition);
  }

  /**
   * True when the intake of this ownership is past `offset`: accepted, or below the offset the
   * group had committed when the ownership began (never fetched again).
   */
  passed(offset: number): boolean {
    if (offset < this.baseOffset) return true;
    return offset <= this.lastAccepted && (this.deferredFloor === undefined || offset < this.deferredFloor);
  }

  /**
   * The lowest offset accepted but deferred (fairness/deferral.ts: not in its key's lane yet), so
   * the intake has not passed it.
   */
  deferredFloor: number | undefined;

  /** True when `offset` was already accepted in this ownership (re-fetched after a rejoin). */
  seen(offset: number): boolean {
    return offset <= this.lastAccepted;
  }

  accept(offset: number): void {
    if (offset <= this.lastAccepted) {
      throw new Error(
        `offset ${offset} of ${this.topic}[${this.partition}] accepted twice (last ${this.lastAccepted})`,
      );
    }
    this.push(offset, false);
    if (this.preloadedDone.size > 0) this.absorbPreloaded();
  }

  private push(offset: number, done: boolean): void {
    this.offsets.push(offset);
    this.done.push(done);
    this.lastAccepted = offset;
    if (!done) this.pending++;
  }

  /**
   * The fetch covered offsets up to `next - 1` that carry no job (transaction markers, aborted
   * records): once everything before is done, the commit point may move past them, so a
   * transactional write does not leave a lag of one behind forever.
   */
  skipTo(next: number): void {
    if (next - 1 > this.lastAccepted) this.lastAccepted = next - 1;
    if (this.preloadedDone.size > 0) this.absorbPreloaded();
  }

  /** Marks an accepted offset done. Returns false for an offset this tracker does not hold. */
  complete(offset: number): boolean {
    const index = this.indexOf(offset);
    if (index < 0 || this.done[index]) return false;
    this.done[index] = true;
    this.pending--;
    this.advanceHead();
    if (this.head > 1024 && this.head * 2 > this.offsets.length) {
      this.offsets = this.offsets.slice(this.head);
      this.done = this.done.slice(this.head);
      this.head = 0;
    }
    return true;
  }

  private indexOf(offset: number): number {
    // Binary search: offsets are increasing.
    let lo = this.head;
    let hi = this.offsets.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const value = this.offsets[mid]!;
      if (value === offset) return mid;
      if (value < offset) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /** The offset to commit (the next record to read), or undefined before anything was accepted. */
  commitPoint(): number | undefined {
    if (this.lastAccepted < 0) return undefined;
    if (this.head < this.offsets.length) return this.offsets[this.head]!;
    return this.lastAccepted + 1;
  }

  /**
   * Offsets right after the last accepted one that the previous owner's map said were done are
   * taken as accepted and done now, as the intake takes them when it fetches them: otherwise the
   * commit point could stop on one, and a map holds only offsets above its point (sim seed 60302).
   */
  private absorbPreloaded(): void {
    // Pushed as done, not through accept/complete: a long run must not recurse once per offset.
    for (let next = this.lastAccepted + 1; this.preloadedDone.delete(next); next++) this.push(next, true);
    this.advanceHead();
  }

  /** Past the done offsets at the front: the commit point. */
  private advanceHead(): void {
    while (this.head < this.offsets.length && this.done[this.head]) this.head++;
  }

  /**
   * Done offsets above the commit point (finished out of order), ascending — with those the
   * previous owner's map said were done and this ownership has not fetched yet: a commit made
   * before the intake reached them must not drop them from the map (the next owner would run them
   * again; with exactly once, publish their follow-ups twice).
   */
  doneAbove(): number[] {
    const out: number[] = [];
    for (let i = this.head; i < this.offsets.length; i++) if (this.done[i]) out.push(this.offsets[i]!);
    if (this.preloadedDone.size === 0) return out;
    const point = this.commitPoint() ?? -1;
    for (const o of this.preloadedDone) if (o > point && o > this.lastAccepted) out.push(o);
    return out.sort((a, b) => a - b);
  }

  /** Accepted jobs not yet done. */
  pendingCount(): number {
    return this.pending;
  }

  /** The oldest accepted offset not yet done. */
  oldestPending(): number | undefined {
    return this.head < this.offsets.length ? this.offsets[this.head] : undefined;
  }
}
