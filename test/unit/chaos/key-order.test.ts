import { describe, expect, it } from 'vitest';
import { completedRuns, keyOrderViolations, type LedgerLine, parseLedgerLine } from '../../../chaos/fleet.js';

/** Ledger lines, one per line of `text`. */
function ledger(text: string): LedgerLine[] {
  return text.trim().split('\n').map(parseLedgerLine);
}

describe('per-key order judged by start and end times across processes', () => {
  it('accepts one key handed from one process to another, each job after the previous one ended', () => {
    const lines = ledger(`
      S j1 k 1 1 A 100
      C j1 k 1 1 A 110
      S j2 k 2 1 B 110
      C j2 k 2 1 B 130
      S j3 k 3 1 A 131
      C j3 k 3 1 A 140`);
    expect(keyOrderViolations(lines)).toEqual([]);
  });

  it('catches two jobs of one key running at once in two processes, though they started in order', () => {
    // First starts (and first completions) are in sequence order: a check on those alone passes.
    const lines = ledger(`
      S j1 k 1 1 A 100
      S j2 k 2 1 B 105
      C j1 k 1 1 A 110
      C j2 k 2 1 B 120`);
    expect(keyOrderViolations(lines)).toEqual([
      'k: #2 (pid B, 105-120) ran at the same time as #1 (pid A, 100-110)',
    ]);
  });

  it('catches a later job starting before an earlier one', () => {
    const lines = ledger(`
      S j2 k 2 1 B 90
      C j2 k 2 1 B 95
      S j1 k 1 1 A 100
      C j1 k 1 1 A 110`);
    expect(keyOrderViolations(lines)).toEqual(['k: #2 (pid B, 90-95) started before #1 (pid A, 100-110)']);
  });

  it('judges the completed attempt: a run killed mid-way and a failed attempt are not the run', () => {
    const lines = ledger(`
      S j1 k 1 1 A 100
      S j1 k 1 1 B 200
      C j1 k 1 1 B 210
      S j2 k 2 1 B 211
      S j2 k 2 2 B 230
      C j2 k 2 2 B 240`);
    // A was SIGKILLed while running j1; j2's first attempt failed and its second completed.
    expect(completedRuns(lines).map((r) => [r.jobId, r.pid, r.start, r.end])).toEqual([
      ['j1', 'B', 200, 210],
      ['j2', 'B', 230, 240],
    ]);
    expect(keyOrderViolations(lines)).toEqual([]);
  });

  it('a duplicate delivery of a completed job (after a crash) is not held against the order', () => {
    const lines = ledger(`
      S j1 k 1 1 A 100
      C j1 k 1 1 A 110
      S j2 k 2 1 A 111
      C j2 k 2 1 A 120
      S j1 k 1 1 B 300
      C j1 k 1 1 B 310
      S j2 k 2 1 B 311
      C j2 k 2 1 B 320`);
    expect(keyOrderViolations(lines)).toEqual([]);
  });

  it('keys are judged apart: other keys may overlap freely', () => {
    const lines = ledger(`
      S a1 a 1 1 A 100
      S b1 b 1 1 B 101
      C a1 a 1 1 A 110
      C b1 b 1 1 B 111`);
    expect(keyOrderViolations(lines)).toEqual([]);
  });
});
