/**
 * Plants the defects of issue 25 again, one at a time, and runs the simulation against each.
 *
 *   node --import tsx test/sim/plants/run.ts [--seeds N] [--workers W] [--only 02,05]
 *
 * For each `NN-name.patch` here: a detached git worktree of HEAD in a temporary directory (sharing
 * this checkout's node_modules), `git apply` the patch, run `test/sim/run.ts --seeds N` there, and
 * record the first failing seed and its invariant; the worktree is removed afterwards. Prints a
 * table (the one in test/sim/README.md) and exits 1 when fewer than seven plants were caught.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

const here = resolve(import.meta.dirname);
const root = resolve(here, '../../..');

const { values } = parseArgs({
  options: {
    seeds: { type: 'string', default: '2000' },
    workers: { type: 'string', default: '1' },
    only: { type: 'string' },
  },
});
const only = values.only?.split(',');
const patches = readdirSync(here)
  .filter((f) => f.endsWith('.patch'))
  .filter((f) => !only || only.some((o) => f.startsWith(o)))
  .sort();

const rows: {
  plant: string;
  caught: boolean;
  seed?: string | undefined;
  kind?: string | undefined;
  text?: string | undefined;
}[] = [];
for (const patch of patches) {
  const dir = mkdtempSync(join(tmpdir(), 'strand-plant-'));
  try {
    execFileSync('git', ['-C', root, 'worktree', 'add', '--detach', '-q', dir, 'HEAD']);
    symlinkSync(join(root, 'node_modules'), join(dir, 'node_modules'));
    execFileSync('git', ['-C', dir, 'apply', join(here, patch)]);
    const run = spawnSync(
      process.execPath,
      ['--import', 'tsx', 'test/sim/run.ts', '--seeds', values.seeds, '--workers', values.workers],
      { cwd: dir, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
    );
    const out = `${run.stdout}\n${run.stderr}`;
    const m = /^seed (\d+): ([\w-]+) at \d+ ms: (.*)$/m.exec(out);
    rows.push(
      m
        ? { plant: patch, caught: true, seed: m[1], kind: m[2], text: m[3] }
        : { plant: patch, caught: false, text: out.trim().split('\n').at(-1) },
    );
    const r = rows.at(-1)!;
    console.log(`${patch}: ${r.caught ? `caught by ${r.kind} at seed ${r.seed}` : `not caught (${r.text})`}`);
  } finally {
    execFileSync('git', ['-C', root, 'worktree', 'remove', '--force', dir]);
    rmSync(dir, { recursive: true, force: true });
  }
}

console.log('\n| plant | invariant | first seed | what it saw |\n| --- | --- | --- | --- |');
for (const r of rows)
  console.log(
    `| ${r.plant} | ${r.kind ?? 'not caught'} | ${r.seed ?? '-'} | ${(r.text ?? '').slice(0, 120)} |`,
  );
const caught = rows.filter((r) => r.caught).length;
console.log(`\n${caught} of ${rows.length} plants caught (seeds 1..${values.seeds})`);
if (!only && caught < 7) process.exit(1);
