/**
 * The worker's lifecycle as every part sees it: whether it runs, whether it may start jobs (not
 * paused by the user, not draining for a rebalance), and the signal that aborts every wait on stop.
 */
export class RunState {
  phase: 'new' | 'starting' | 'running' | 'stopping' | 'stopped' = 'new';
  /** `Worker.pause()`: no job starts; running ones finish. */
  paused = false;
  /** The group rebalances: no job starts until the next assignment (docs/architecture.md, "Rebalances"). */
  rebalancing = false;
  private readonly stopController = new AbortController();

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
