/**
 * `npm run bench:ab -- [--jobs N] [--rounds R] [--node-args "a b" ...]`: a quick A/B of
 * the no-op worker against the fast kafkajs loop on one topic (filled once): each round runs the
 * fast loop, then Strand (`--handler noop` or `noop-batch`, `--options` JSON over the bench's
 * defaults) once per `--node-args` variant (node flags and NAME=value environment
 * words; default: none), and prints each run and
 * the per-round ratios. For profiling work between full `npm run bench` runs; not a result file.
 */
import { parseArgs } from 'node:util';
import { benchStack, benchTopic, deleteBenchTopics, fill, stats } from './lib.js';
import { kafkajsRun, STRAND_DEFAULTS, strandRun } from './scenarios.js';

const { values } = parseArgs({
  options: {
    jobs: { type: 'string' },
    rounds: { type: 'string' },
    'node-args': { type: 'string', multiple: true },
    options: { type: 'string' },
    handler: { type: 'string' },
  },
});
const handler = (values.handler ?? 'noop') as 'noop' | 'noop-batch';
const jobs = Number(values.jobs ?? 200_000);
const rounds = Number(values.rounds ?? 3);
const variants = values['node-args'] ?? [''];
const options = { ...STRAND_DEFAULTS, ...(values.options ? JSON.parse(values.options) : {}) };
const s = await benchStack();
await deleteBenchTopics(s);
// Its retry tiers exist when the options name some (strict key order parks keys only with tiers).
const tiers = ((options as { retry?: { tiers?: number[] } }).retry?.tiers ?? []).map(Number);
const topic = await benchTopic(s, 'ab', 12, tiers);
await fill(s, topic, jobs, 1000);
const fast: number[] = [];
const strand = variants.map(() => [] as number[]);
const ratios = variants.map(() => [] as number[]);
const cpu = variants.map(() => [] as number[]);
const fastCpu: number[] = [];
for (let r = 0; r < rounds; r++) {
  const fr = await kafkajsRun(s, topic, jobs, 'fast');
  const f = Number(fr.jobsPerSecond);
  fast.push(f);
  fastCpu.push(Number(fr.cpuMicrosPerJob));
  for (const [i, v] of variants.entries()) {
    const words = v.split(' ').filter(Boolean);
    // NAME=value words are set in the child's environment for this run; the rest are node flags.
    const vars = words.filter((w) => /^[A-Z_]+=/.test(w)).map((w) => w.split('=') as [string, string]);
    const nodeArgs = words.filter((w) => !/^[A-Z_]+=/.test(w));
    for (const [k, value] of vars) process.env[k] = value;
    const sr = await strandRun(s, topic, jobs, handler, options, { nodeArgs });
    for (const [k] of vars) delete process.env[k];
    const run = Number(sr.jobsPerSecond);
    strand[i]!.push(run);
    ratios[i]!.push(run / f);
    cpu[i]!.push(Number(sr.cpuMicrosPerJob));
    console.log(
      `round ${r + 1}: fast ${Math.round(f)} (${fr.cpuMicrosPerJob} µs cpu/job), strand[${v || 'default'}] ${Math.round(run)} (${sr.cpuMicrosPerJob} µs cpu/job), ratio ${(run / f).toFixed(3)}`,
    );
  }
}
const line = (x: { median: number; min: number; max: number }) => `${x.median} (${x.min}–${x.max})`;
console.log(`fast: ${line(stats(fast))} jobs/s, ${line(stats(fastCpu, 2))} µs cpu/job`);
for (const [i, v] of variants.entries())
  console.log(
    `strand[${v || 'default'}]: ${line(stats(strand[i]!))} jobs/s, ${line(stats(cpu[i]!, 2))} µs cpu/job, ratio ${line(stats(ratios[i]!, 3))}`,
  );
await deleteBenchTopics(s);
process.exit(0);
