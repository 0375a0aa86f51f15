/**
 * `npm run bench:profile [-- --jobs N] [--keep-before]`: CPU profile of the no-op worker (from
 * dist/, plain node under `--cpu-prof`, the throughput scenario's options) consuming a backlog of
 * N jobs (default 300,000) on 12 partitions, 1,000 keys. Writes bench/results/profile.md (top-20
 * self-time table, by file, by package) and keeps the raw profile as
 * bench/results/profile.cpuprofile (untracked). The previous profile.md becomes profile-before.md;
 * with --keep-before an existing profile-before.md stays (profile again and again against one
 * baseline while optimizing). --batch profiles the batch worker (maxSize 500); --out NAME writes
 * NAME.md and NAME.cpuprofile instead (no profile-before.md then).
 */
import {
  copyFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { aggregate, type CpuProfile, renderTables } from './cpuprofile.js';
import { machine } from './env.js';
import { benchStack, benchTopic, deleteBenchTopics, fill, round } from './lib.js';
import { STRAND_BATCH, STRAND_DEFAULTS, strandRun } from './scenarios.js';

const { values } = parseArgs({
  options: {
    jobs: { type: 'string' },
    'keep-before': { type: 'boolean' },
    interval: { type: 'string' },
    batch: { type: 'boolean' },
    out: { type: 'string' },
  },
});
const jobs = Number(values.jobs ?? 300_000);
// --batch: the batch worker of the batch scenario (maxSize 500) instead of the single-job worker.
const batch = values.batch === true;
const options = batch ? STRAND_BATCH : STRAND_DEFAULTS;
// --out NAME: writes NAME.md (and NAME.cpuprofile) instead of profile.md; no profile-before.md.
const name = values.out ?? 'profile';
const intervalUs = Number(values.interval ?? 1000);
const partitions = 12;
const keys = 1000;
const results = join(import.meta.dirname, 'results');
const s = await benchStack();
await deleteBenchTopics(s);
const dir = mkdtempSync(join(tmpdir(), 'strand-profile-'));
try {
  const topic = await benchTopic(s, 'profile', partitions);
  console.error(`filling ${jobs} jobs`);
  await fill(s, topic, jobs, keys);
  console.error('profiling the worker');
  const nodeArgs = ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-interval=${intervalUs}`];
  const run = await strandRun(s, topic, jobs, batch ? 'noop-batch' : 'noop', options, { nodeArgs });
  const written = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!written) throw new Error(`no .cpuprofile written in ${dir}`);
  const raw = join(results, `${name}.cpuprofile`);
  copyFileSync(join(dir, written), raw);
  const profile = JSON.parse(readFileSync(raw, 'utf8')) as CpuProfile;
  const m = machine();
  const md = [
    `# CPU profile: no-op ${batch ? 'batch ' : ''}worker`,
    '',
    `${m.at} · commit ${m.commit}${m.dirty ? ' (dirty work tree)' : ''} · node ${m.node} · ${m.cores} cores (${m.cpu}) · load ${m.loadAverage1m}`,
    '',
    `\`npm run bench:profile -- --jobs ${jobs}${batch ? ' --batch' : ''}\`: \`node --cpu-prof --cpu-prof-interval=${intervalUs} bench/child.mjs strand\`, ` +
      `Strand from dist/, ${jobs} jobs backlog on ${partitions} partitions, ${keys} keys, no-op ${batch ? 'batch ' : ''}handler, ` +
      `options ${JSON.stringify(options)}. The profile covers the whole process (start, group join, ` +
      `consumption, stop); ${round(Number(run.jobsPerSecond))} jobs/s while profiled (first to last job). ` +
      `Raw profile: bench/results/${name}.cpuprofile (untracked; open it in Chrome DevTools or VS Code).`,
    '',
    renderTables(aggregate(profile), 20),
  ].join('\n');
  const current = join(results, `${name}.md`);
  const before = join(results, 'profile-before.md');
  const keep = values['keep-before'] && existsSync(before);
  if (name === 'profile' && existsSync(current) && !keep) renameSync(current, before);
  writeFileSync(current, md);
  console.log(md);
  console.error(`wrote ${current}${existsSync(before) ? ` (previous: ${before})` : ''}`);
} catch (error) {
  console.error(`failed: ${(error as Error).stack ?? error}`);
  process.exitCode = 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
  await deleteBenchTopics(s).catch(() => undefined);
}
process.exit();
