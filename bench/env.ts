import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';

const sh = (cmd: string, trim = true) => {
  try {
    // `java -version` prints on stderr: take both streams.
    const out = execFileSync('sh', ['-c', `${cmd} 2>&1`], { encoding: 'utf8' });
    return trim ? out.trim() : out;
  } catch {
    return 'unknown';
  }
};

let fixed: { commit: string; dirty: boolean; dirtyPaths: string[]; java: string } | undefined;

/**
 * The code a run measured, read once per process (at its start): the commit and whether the work
 * tree differed from it (`git status --porcelain`, leaving out bench/results/ and chaos/results/,
 * which the runs themselves write).
 */
function code() {
  if (!fixed) {
    const porcelain = sh('git status --porcelain --untracked-files=all', false);
    const dirtyPaths =
      porcelain === 'unknown'
        ? []
        : porcelain
            .split('\n')
            .filter(Boolean)
            .map((l) => l.slice(3))
            .filter((path) => !path.startsWith('bench/results/') && !path.startsWith('chaos/results/'));
    fixed = {
      commit: sh('git rev-parse --short HEAD'),
      dirty: porcelain === 'unknown' || dirtyPaths.length > 0,
      dirtyPaths,
      java: sh('java -version').split('\n')[0] ?? 'unknown',
    };
  }
  return fixed;
}
code(); // at import: the state the run started from

/** The machine and commit a benchmark ran on, recorded next to every result. */
export function machine() {
  const c = code();
  return {
    commit: c.commit,
    dirty: c.dirty,
    ...(c.dirty ? { dirtyPaths: c.dirtyPaths.slice(0, 20) } : {}),
    node: process.version,
    java: c.java,
    os: `${process.platform} ${release()}`,
    cores: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown',
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    loadAverage1m: Number(loadavg()[0]!.toFixed(2)),
    at: new Date().toISOString(),
  };
}

/** Writes `bench/results/<name>.json` and returns its path. */
export function writeResult(name: string, result: object): string {
  const dir = join(import.meta.dirname, 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${name}.json`);
  writeFileSync(file, `${JSON.stringify({ machine: machine(), ...result }, null, 2)}\n`);
  return file;
}
