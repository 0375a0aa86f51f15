/** How jobs of one partition may overlap. */
export type OrderingMode = 'key' | 'partition' | 'unordered';

/** What the scheduler needs to know of a job. */
export interface Schedulable {
  /** `topic:partition` */
  readonly tp: string;
  readonly key: string | null;
  /** Acceptance order across the worker (oldest first). */
  readonly seq: number;
  /** Its job id: a batch never holds two jobs with one id (the second would wait for the first's lease). */
  readonly jobId?: string;
  /** The lane's name, filled in by the scheduler on first use (one string per job, not per call). */
  lane?: string | undefined;
  /** Its tenant (fairness and per-tenant limits, fairness/tenant-queue.ts). */
  tenant?: string | undefined;
}

/** Where the scheduler keeps runnable jobs: oldest first, or (fairness/) by tenant in turn. */
export interface ReadyQueue<T extends Schedulable> {
  readonly size: number;
  push(item: T): void;
  /** The next job to start; undefined when none may start now (limits), even with `size` > 0. */
  pop(): T | undefined;
  readonly all: readonly T[];
  removeWhere(pred: (item: T) => boolean): T[];
}

/** A binary min-heap on `seq`. */
export class SeqHeap<T extends Schedulable> implements ReadyQueue<T> {
  private items: T[] = [];
  get size(): number {
    return this.items.length;
  }
  push(item: T): void {
    const a = this.items;
    a.push(item);
    let i = a.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (a[parent]!.seq <= a[i]!.seq) break;
      [a[parent], a[i]] = [a[i]!, a[parent]!];
      i = parent;
    }
  }
  pop(): T | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && a[l]!.seq < a[m]!.seq) m = l;
        if (r < a.length && a[r]!.seq < a[m]!.seq) m = r;
        if (m === i) break;
        [a[m], a[i]] = [a[i]!, a[m]!];
        i = m;
      }
    }
    return top;
  }
  /** The items in heap order (not sorted). */
  get all(): readonly T[] {
    return this.items;
  }
  removeWhere(pred: (item: T) => boolean): T[] {
    const removed = this.items.filter(pred);
    if (removed.length) {
      const kept = this.items.filter((x) => !pred(x));
      this.items = [];
      for (const x of kept) this.push(x);
    }
    return removed;
  }
}

/**
 * Per-key FIFO scheduling. In `key` mode a job is runnable only when no earlier job with the same
 * key from the same partition is running or waiting; `partition` mode uses one lane per partition;
 * `unordered` (and null keys) run as soon as there is capacity. Runnable jobs are handed out
 * oldest-first across partitions so commit points keep advancing.
 */
export class KeyScheduler<T extends Schedulable> {
  private readonly ready: ReadyQueue<T>;
  /** Lanes with a running job; the array holds jobs of that lane waiting behind it. */
  private readonly lanes = new Map<string, T[]>();
  private waitingCount = 0;
  /** Batches: jobs a lane's batch holds besides the one `finish` releases the lane with. */
  private readonly batched = new Map<string, number>();
  /** Batches: lanes whose head is ready (not handed out), so their queue could join a batch. */
  private readonly idle = new Set<string>();
  /** Batches: jobs `takeBatch` could hand out now (ready jobs and the queues of idle lanes). */
  private takeableCount = 0;

  /** `batching`: jobs are handed out with `takeBatch`, which keeps `takeable` (a little work per job). */
  constructor(
    readonly mode: OrderingMode,
    private readonly batching = false,
    ready?: ReadyQueue<T>,
  ) {
    this.ready = ready ?? new SeqHeap<T>();
  }

  /**
   * The last `takeBatch` left a job that goes alone (a release record) for the next one: that
   * one should not wait for a batch to fill, or an older job of another lane becomes runnable
   * meanwhile and goes first again, batch after batch (sim seed 46870).
   */
  soloLeft = false;

  /** Jobs `takeBatch` would hand out now, without a limit (batching schedulers only). */
  get takeable(): number {
    return this.takeableCount;
  }

  private laneOf(job: T): string | undefined {
    if (this.mode === 'unordered') return undefined;
    if (this.mode === 'partition') {
      job.lane ??= job.tp;
      return job.lane;
    }
    if (job.key === null) return undefined;
    job.lane ??= `${job.tp}\u0000${job.key}`;
    return job.lane;
  }

  /** Runnable heads: what a batch of at most one job per lane could take now. */
  get heads(): number {
    return this.ready.size;
  }

  /** True when `nextRunnable()` would return a job (ignoring `skip`). */
  get hasRunnable(): boolean {
    return this.ready.size > 0;
  }

  /** Jobs accepted and not yet handed out. */
  get waiting(): number {
    return this.waitingCount;
  }

  add(job: T): void {
    this.waitingCount++;
    const lane = this.laneOf(job);
    if (lane === undefined) {
      this.ready.push(job);
      if (this.batching) this.takeableCount++;
      return;
    }
    const queue = this.lanes.get(lane);
    if (queue) {
      queue.push(job);
      if (this.batching && this.idle.has(lane)) this.takeableCount++;
    } else {
      // The lane is claimed now; it is released when its last job finishes.
      this.lanes.set(lane, []);
      this.ready.push(job);
      if (this.batching) {
        this.idle.add(lane);
        this.takeableCount++;
      }
    }
  }

  /**
   * Up to `max` jobs for one batch, oldest first: the oldest ready jobs, then the jobs waiting
   * behind them in their lanes (one per lane in turn, so the batch stays close to offset order
   * across keys). A lane's jobs are taken in its order and the lane stays held until every one of
   * them finished: no other batch gets a job of it meanwhile. Returned in acceptance order.
   * `onePerLane`: only the ready jobs, one per lane (strict key order). A `solo` job is taken
   * only as a batch of its own (its lane held like any other).
   */
  takeBatch(max: number, onePerLane = false, solo?: (job: T) => boolean): T[] {
    const batch: T[] = [];
    const lanes: { lane: string; queue: T[]; taken: number; full?: true }[] = [];
    const ids = new Set<string | undefined>();
    const later: T[] = [];
    let soloLeft = false;
    while (batch.length < max) {
      const head = this.ready.pop();
      if (!head) break;
      if (head.jobId !== undefined && ids.has(head.jobId)) {
        later.push(head);
        continue;
      }
      if (solo?.(head) && batch.length > 0) {
        later.push(head);
        soloLeft = true;
        continue;
      }
      ids.add(head.jobId);
      batch.push(head);
      this.takeableCount--;
      const lane = this.laneOf(head);
      if (solo?.(head)) {
        if (lane !== undefined) {
          this.idle.delete(lane);
          this.takeableCount -= this.lanes.get(lane)!.length;
        }
        break;
      }
      if (lane === undefined) continue;
      this.idle.delete(lane);
      const queue = this.lanes.get(lane)!;
      // The rest of this lane's queue waits behind a busy lane now.
      this.takeableCount -= queue.length;
      if (queue.length > 0) lanes.push({ lane, queue, taken: 0 });
    }
    for (let more = lanes.length > 0 && !onePerLane; more && batch.length < max; ) {
      more = false;
      for (const l of lanes) {
        if (batch.length >= max) break;
        const next = l.full ? undefined : l.queue[0];
        if (!next) continue;
        // A second job with an id already in the batch ends what this batch takes of its lane.
        if (next.jobId !== undefined && ids.has(next.jobId)) {
          l.full = true;
          continue;
        }
        ids.add(next.jobId);
        l.queue.shift();
        batch.push(next);
        l.taken++;
        more = true;
      }
    }
    for (const head of later) this.ready.push(head);
    this.soloLeft = soloLeft;
    for (const l of lanes) if (l.taken > 0) this.batched.set(l.lane, l.taken);
    this.waitingCount -= batch.length;
    return batch.sort((a, b) => a.seq - b.seq);
  }

  /** The oldest runnable job, or undefined. `skip` leaves jobs in place (e.g. a paused partition). */
  nextRunnable(skip?: (job: T) => boolean): T | undefined {
    if (!skip) {
      const job = this.ready.pop();
      if (job) this.waitingCount--;
      return job;
    }
    const held: T[] = [];
    let found: T | undefined;
    for (let job = this.ready.pop(); job; job = this.ready.pop()) {
      if (skip(job)) held.push(job);
      else {
        found = job;
        break;
      }
    }
    for (const job of held) this.ready.push(job);
    if (found) this.waitingCount--;
    return found;
  }

  /** A handed-out job reached its outcome: the next job of its lane becomes runnable. */
  finish(job: T): void {
    const lane = this.laneOf(job);
    if (lane === undefined) return;
    const queue = this.lanes.get(lane);
    if (!queue) return;
    if (this.batching) {
      // A lane held by a batch is released by its last job, whichever finishes last.
      const others = this.batched.get(lane);
      if (others !== undefined) {
        if (others > 1) this.batched.set(lane, others - 1);
        else this.batched.delete(lane);
        return;
      }
    }
    const next = queue.shift();
    if (next) {
      this.ready.push(next);
      if (this.batching) {
        this.idle.add(lane);
        this.takeableCount += 1 + queue.length;
      }
    } else this.lanes.delete(lane);
  }

  /** Forgets waiting jobs of a partition (revoked); running ones finish and call `finish` as usual. */
  dropPartition(tp: string): T[] {
    const heads = this.ready.removeWhere((j) => j.tp === tp);
    const dropped = [...heads];
    // A lane whose head was still waiting has nothing running: release it.
    for (const job of heads) {
      const lane = this.laneOf(job);
      if (lane !== undefined) {
        dropped.push(...(this.lanes.get(lane) ?? []));
        this.lanes.delete(lane);
      }
    }
    // Lanes whose head is running keep the lane until `finish`, but lose their queue.
    for (const [lane, queue] of this.lanes) {
      if (queue.length > 0 && queue[0]!.tp === tp) {
        dropped.push(...queue);
        this.lanes.set(lane, []);
      }
    }
    this.waitingCount -= dropped.length;
    if (this.batching) this.recount();
    return dropped;
  }

  /** Batches: `takeable` and the idle lanes from scratch (after a partition left). */
  private recount(): void {
    this.idle.clear();
    let n = 0;
    for (const head of this.ready.all) {
      n++;
      const lane = this.laneOf(head);
      if (lane === undefined) continue;
      this.idle.add(lane);
      n += this.lanes.get(lane)?.length ?? 0;
    }
    this.takeableCount = n;
  }
}
