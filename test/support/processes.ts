import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stack } from './helpers.js';

export interface LedgerLine {
  kind: 'S' | 'C';
  jobId: string;
  key: string;
  sequence: number;
  attempt: number;
  pid: string;
  at: number;
}

/** Worker processes started by a test; `killAll` in afterEach makes sure none outlives it. */
export class WorkerFleet {
  readonly dir = mkdtempSync(join(tmpdir(), 'strand-fleet-'));
  readonly ledger = join(this.dir, 'ledger.txt');
  private readonly children = new Set<ChildProcess>();
  readonly logs: string[] = [];

  constructor(private readonly settings: Record<string, unknown>) {}

  start(extra: Record<string, unknown> = {}): ChildProcess {
    const { brokers, registryUrl } = stack();
    const child = spawn(process.execPath, ['dist/cli/main.js', 'worker', 'test/support/ledger-worker.ts'], {
      env: {
        ...process.env,
        STRAND_BROKERS: brokers.join(','),
        STRAND_REGISTRY_URL: registryUrl,
        STRAND_LOG_LEVEL: 'warn',
        STRAND_TEST_WORKER: JSON.stringify({ ...this.settings, ...extra, ledger: this.ledger }),
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    child.stderr?.on('data', (d: Buffer) => {
      if (this.logs.length < 2000) this.logs.push(d.toString());
    });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    return child;
  }

  get alive(): ChildProcess[] {
    return [...this.children];
  }

  kill(child: ChildProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    return new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill(signal);
    });
  }

  async killAll(): Promise<void> {
    await Promise.all(this.alive.map((c) => this.kill(c)));
  }

  read(): LedgerLine[] {
    if (!existsSync(this.ledger)) return [];
    return readFileSync(this.ledger, 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        const [kind, jobId, key, sequence, attempt, pid, at] = line.split(' ');
        return {
          kind: kind as 'S' | 'C',
          jobId: jobId!,
          key: key!,
          sequence: Number(sequence),
          attempt: Number(attempt),
          pid: pid!,
          at: Number(at),
        };
      });
  }

  completedIds(): Set<string> {
    return new Set(
      this.read()
        .filter((l) => l.kind === 'C')
        .map((l) => l.jobId),
    );
  }
}

/** Per key, the sequences of first starts must be increasing (enqueue order); returns violations. */
export function orderViolations(lines: LedgerLine[]): string[] {
  const firstStart = new Map<string, LedgerLine>();
  for (const l of lines) if (l.kind === 'S' && !firstStart.has(l.jobId)) firstStart.set(l.jobId, l);
  const byKey = new Map<string, number[]>();
  for (const l of firstStart.values()) byKey.set(l.key, [...(byKey.get(l.key) ?? []), l.sequence]);
  const violations: string[] = [];
  for (const [key, seqs] of byKey) {
    for (let i = 1; i < seqs.length; i++) {
      if (seqs[i]! < seqs[i - 1]!) {
        violations.push(`${key}: ${seqs[i - 1]} started before ${seqs[i]}`);
        break;
      }
    }
  }
  return violations;
}
