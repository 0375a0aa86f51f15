/**
 * The benchmark suite: `npm run bench` (full) or `npm run bench -- --quick` (reduced sizes, a few
 * minutes). Each scenario writes bench/results/<scenario>.json; bench/results/summary.md collects
 * them. Select scenarios with `--only throughput,latency`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { machine, writeResult } from './env.js';
import { benchStack, deleteBenchTopics } from './lib.js';
import {
  failureOverhead,
  keyConcurrency,
  latency,
  memory,
  producerPerformance,
  retryDelay,
  throughput,
} from './scenarios.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean' }, only: { type: 'string' } } });
const size = { quick: values.quick === true };
const only = values.only ? new Set(values.only.split(',')) : undefined;
const want = (name: string) => !only || only.has(name);
const s = await benchStack();
await deleteBenchTopics(s);
const SCENARIOS = [
  'throughput',
  'producer',
  'key-concurrency',
  'latency',
  'memory',
  'retry-delay',
  'failure-overhead',
];
// Start from the recorded results of the same size, so `--only` updates one row of the summary.
const results: Record<string, Record<string, unknown>> = {};
for (const name of SCENARIOS) {
  try {
    const r = JSON.parse(
      readFileSync(join(import.meta.dirname, 'results', `${name}${size.quick ? '-quick' : ''}.json`), 'utf8'),
    ) as Record<string, unknown>;
    if ((r.quick === true) === size.quick) results[name] = r;
  } catch {
    // not recorded yet
  }
}

async function step(name: string, fn: () => Promise<Record<string, unknown>>) {
  if (!want(name)) return;
  const t0 = Date.now();
  console.error(`▶ ${name}${size.quick ? ' (quick)' : ''}`);
  try {
    const r = { ...(await fn()), quick: size.quick };
    results[name] = r;
    writeResult(size.quick ? `${name}-quick` : name, r);
    console.error(`  ${JSON.stringify(r)}`);
  } catch (error) {
    results[name] = { scenario: name, error: (error as Error).message };
    console.error(`  failed: ${(error as Error).message}`);
  }
  console.error(`  (${Math.round((Date.now() - t0) / 1000)} s)`);
  await deleteBenchTopics(s);
}

await step('throughput', () => throughput(s, size));
await step('producer', async () => {
  const { execFileSync } = await import('node:child_process');
  execFileSync(
    process.execPath,
    ['--import', 'tsx', 'bench/producer.ts', ...(size.quick ? ['--quick'] : [])],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const ours = JSON.parse(
    readFileSync(join(import.meta.dirname, 'results', 'producer.json'), 'utf8'),
  ) as Record<string, unknown>;
  const kafkaTool = await producerPerformance(s, size);
  return { ...ours, ...kafkaTool, scenario: 'producer', machine: undefined, met: Number(ours.ratio) >= 0.8 };
});
await step('key-concurrency', () => keyConcurrency(s, size));
await step('latency', () => latency(s, size));
await step('memory', () => memory(s, size));
await step('retry-delay', () => retryDelay(s, size));
await step('failure-overhead', () =>
  failureOverhead(s, size, (results.throughput?.strandJobsPerSecond as number | undefined) ?? undefined),
);

const m = machine();
const lines = [
  `# Benchmark results${size.quick ? ' (quick)' : ''}`,
  '',
  `${m.at} · commit ${m.commit} · ${m.cores} cores (${m.cpu}) · ${m.memoryGiB} GiB · node ${m.node} · ${m.java}`,
  'Broker, registry and benchmark share this machine; compare ratios measured in the same run.',
  '',
  '| scenario | result | target | met |',
  '|---|---|---|---|',
];
const fmt = (r: Record<string, unknown>) =>
  Object.entries(r)
    .filter(
      ([k]) => !['scenario', 'target', 'met', 'quick', 'machine', 'runs', 'published', 'results'].includes(k),
    )
    .map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`)
    .join('<br>');
for (const [name, r] of Object.entries(results)) {
  lines.push(
    `| ${name} | ${fmt(r)} | ${r.target ?? '(report)'} | ${r.met === undefined ? '-' : r.met ? 'yes' : 'no'} |`,
  );
}
const kc = results['key-concurrency'] as
  | { runs?: { mode: string; keys: number | null; seconds: number }[]; jobs?: number }
  | undefined;
if (kc?.runs) {
  lines.push('', `## Key concurrency (${kc.jobs} jobs, 1 partition, 0–5 ms handler, concurrency 100)`, '');
  lines.push('| ordering | Strand (s) | Parallel Consumer, published, 10,000 jobs (s) |', '|---|---|---|');
  const pub: Record<string, number> = {
    partition: 22.2,
    'key 10': 3.3,
    'key 100': 2.18,
    'key 10000': 2.13,
    unordered: 2.83,
  };
  for (const r of kc.runs) {
    const label = r.keys ? `${r.mode} ${r.keys}` : r.mode;
    lines.push(`| ${label} | ${r.seconds} | ${pub[label] ?? '-'} |`);
  }
}
const mem = results.memory as
  | { results?: { backlog: number; peakRssMiB: number; seconds: number }[] }
  | undefined;
if (mem?.results) {
  lines.push(
    '',
    '## Memory (worker process, 1 ms handler)',
    '',
    '| backlog | peak RSS (MiB) | seconds |',
    '|---|---|---|',
  );
  for (const r of mem.results) lines.push(`| ${r.backlog} | ${r.peakRssMiB} | ${r.seconds} |`);
}
const file = join(import.meta.dirname, 'results', size.quick ? 'summary-quick.md' : 'summary.md');
writeFileSync(file, `${lines.join('\n')}\n`);
console.log(lines.join('\n'));
console.error(`wrote ${file}`);
process.exit(0);
