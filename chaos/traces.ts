/**
 * Every chaos scenario's worker processes record their events (`STRAND_TRACE_FILE`, written by
 * `ChaosFleet`); after the scenario the simulation's invariants judge them
 * (test/sim/trace-check.ts), and the ledger is cross-checked against them. A violation fails the
 * scenario. docs/chaos.md, "Traces".
 */
import { existsSync } from 'node:fs';
import { checkTraces, readTraces, type TraceSet } from '../test/sim/trace-check.js';
import { ChaosFleet } from './fleet.js';
import type { Verdict } from './scenarios.js';

/**
 * Runs `scenario` with its fleets' traces under `dir`, then checks them: adds `figures.traces`
 * (what was checked, violations by kind) and a failure per violated invariant.
 */
export async function tracedScenario(dir: string, scenario: () => Promise<Verdict>): Promise<Verdict> {
  const before = ChaosFleet.all.length;
  const previous = process.env.STRAND_CHAOS_TRACE_DIR;
  process.env.STRAND_CHAOS_TRACE_DIR = dir;
  let v: Verdict;
  try {
    v = await scenario();
  } finally {
    if (previous === undefined) delete process.env.STRAND_CHAOS_TRACE_DIR;
    else process.env.STRAND_CHAOS_TRACE_DIR = previous;
  }
  const fleets = ChaosFleet.all.slice(before);
  if (!existsSync(dir)) return v;
  const set = readTraces(dir);
  const ledger = ledgerCrossCheck(set, fleets);
  // A job a SIGKILLed process completed (its ledger says) but did not trace the end of is resolved.
  const verdict = checkTraces(set, { completedUntraced: ledger.untraced });
  const kinds = { ...verdict.kinds };
  if (ledger.missingInTraces > 0) kinds['ledger-not-in-trace'] = ledger.missingInTraces;
  if (ledger.missingInLedger > 0) kinds['trace-not-in-ledger'] = ledger.missingInLedger;
  const failures = Object.entries(kinds).map(([kind, n]) => {
    const first = verdict.violations.find((l) => l.startsWith(`${kind}:`));
    return `trace check: ${n} × ${kind}${first ? ` (first: ${first})` : ''}`;
  });
  const figures = {
    dir,
    workers: verdict.workers,
    events: verdict.events,
    starts: verdict.starts,
    commits: verdict.commits,
    jobs: verdict.jobs,
    jobsResolved: verdict.jobsResolved,
    tornLines: verdict.tornLines,
    ledgerCompletionsChecked: ledger.checked,
    completedUntraced: ledger.untraced.size,
    violations: Object.values(kinds).reduce((a, b) => a + b, 0),
    kinds,
    first: verdict.violations.slice(0, 5),
  };
  return {
    ...v,
    passed: v.passed && failures.length === 0,
    figures: { ...v.figures, traces: figures },
    failures: [...v.failures, ...failures],
  };
}

/**
 * The ledger (handler starts and completions, test/support/ledger-worker.ts) against the traces:
 * every completion the ledger saw is a `completed` end in the trace of its process, unless that
 * process was SIGKILLed (it may die between the two writes: `untraced`, which the trace check
 * counts as resolved — every scenario ends with SIGKILLs); every traced completion of a ledger
 * worker is in the ledger.
 */
function ledgerCrossCheck(set: TraceSet, fleets: readonly ChaosFleet[]) {
  const tracedByPid = new Map<string, Set<string>>();
  for (const lines of set.files.values()) {
    const pid = String(lines.find((l) => l.ev === 'open')?.pid ?? '');
    const done = new Set<string>();
    for (const l of lines) if (l.ev === 'end' && l.outcome === 'completed') done.add(String(l.jobId));
    tracedByPid.set(pid, done);
  }
  const killed = new Set(set.exitLines.filter((e) => e.signal === 'SIGKILL').map((e) => String(e.pid)));
  let checked = 0;
  let missingInTraces = 0;
  let missingInLedger = 0;
  const untraced = new Set<string>();
  for (const f of fleets) {
    const ledgerDone = new Map<string, Set<string>>();
    for (const l of f.read()) {
      if (l.kind !== 'C') continue;
      const ids = ledgerDone.get(l.pid) ?? new Set<string>();
      ids.add(l.jobId);
      ledgerDone.set(l.pid, ids);
    }
    for (const [pid, ids] of ledgerDone) {
      const traced = tracedByPid.get(pid) ?? new Set<string>();
      for (const id of ids) {
        checked++;
        if (traced.has(id)) continue;
        if (killed.has(pid)) untraced.add(id);
        else missingInTraces++;
      }
      for (const id of traced) if (!ids.has(id)) missingInLedger++;
    }
  }
  return { checked, missingInTraces, missingInLedger, untraced };
}
