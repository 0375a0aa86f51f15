import { ChaosFleet, keyOrderViolations, type LedgerLine } from '../../chaos/fleet.js';
import { stack } from './helpers.js';

export type { LedgerLine };

/** Worker processes on the test stack; `killAll` in afterEach makes sure none outlives a test. */
export class WorkerFleet extends ChaosFleet {
  constructor(settings: Record<string, unknown>, module?: string) {
    super(stack(), settings, undefined, module);
  }

  completedIds(): Set<string> {
    return new Set(
      this.read()
        .filter((l) => l.kind === 'C')
        .map((l) => l.jobId),
    );
  }
}

/** Per key, every job's completed run after the previous one's end (`keyOrderViolations`). */
export function orderViolations(lines: LedgerLine[]): string[] {
  return keyOrderViolations(lines);
}
