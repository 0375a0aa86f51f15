/**
 * The worker's lifecycle as every part sees it: whether it runs, whether it may start jobs (not
 * paused by the user, not draining for a rebalance), and the signal that aborts every wait on stop.
 */
type Phase = 'new' | 'starting' | 'running' | 'stopping' | 'stopped';

export class RunState {
  private current = { phase: 'new' as Phase, paused: false, rebalancing: false };
  private readonly stopController = new AbortController();

  /** `changed` hears every change of phase, paused or rebalancing (the `state` worker event). */
  constructor(
    private readonly changed?: (state: { phase: Phase; paused: boolean; rebalancing: boolean }) => void,
  ) {}

  get phase(): Phase {
    return this.current.phase;
  }
  set phase(phase: Phase) {
    this.set({ phase });
  }
  /** `Worker.pause()`: no job starts; running ones finish. */
  get paused(): boolean {
    return this.current.paused;
  }
  set paused(paused: boolean) {
    this.set({ paused });
  }
  /** The group rebalances: no job starts until the next assignment (docs/architecture.md, "Rebalances"). */
  get rebalancing(): boolean {
    return this.current.rebalancing;
  }
  set rebalancing(rebalancing: boolean) {
    this.set({ rebalancing });
  }

  private set(change: Partial<RunState['current']>): void {
    const next = { ...this.current, ...change };
    const c = this.current;
    if (next.phase === c.phase && next.paused === c.paused && next.rebalancing === c.rebalancing) return;
    this.current = next;
    this.changed?.({ ...next });
  }

  get running(): boolean {
    return this.phase === 'running';
  }

  /** Jobs may start now. */
  get canStart(): boolean {
    return this.phase === 'running' && !this.paused && !this.rebalancing;
  }

  /** Aborts when the worker gives up on running jobs during stop (every wait listens to it). */
  get stopSignal(): AbortSignal {
    return this.stopController.signal;
  }

  abortWaits(): void {
    this.stopController.abort();
  }
}
