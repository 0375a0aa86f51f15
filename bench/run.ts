/**
 * The benchmark suite: `npm run bench` (full) or `npm run bench -- --quick` (reduced sizes).
 * Strand is measured from dist/ (the script builds it first) in child processes of plain node;
 * every figure is the median of `--rounds` interleaved runs (default 3) with min and max.
 * Each scenario writes bench/results/<scenario>.json (quick: <scenario>-quick.json, never the full
 * files) and bench/results/summary.md (quick: summary-quick.md) collects them. Select scenarios
 * with `--only throughput,latency`. Exits 1 when a scenario failed.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { machine, writeResult } from './env.js';
import { benchStack, deleteBenchTopics } from './lib.js';
import { outboxBench } from './outbox.js';
import {
  batch,
  failureOverhead,
  keyConcurrency,
  latency,
  memory,
  producer,
  retryDelay,
  type Size,
  strictOrder,
  throughput,
} from './scenarios.js';

const { values } = parseArgs({
  options: { quick: { type: 'boolean' }, only: { type: 'string' }, rounds: { type: 'string' } },
});
const size: Size = { quick: values.quick === true, rounds: Number(values.rounds ?? 3) };
if (!Number.isInteger(size.rounds) || size.rounds < 1) {
  console.error(`--rounds: expected a positive integer, got ${values.rounds}`);
  process.exit(2);
}
const SCENARIOS = {
  throughput,
  producer,
  'key-concurrency': keyConcurrency,
  latency,
  memory,
  'retry-delay': retryDelay,
  'failure-overhead': failureOverhead,
  'strict-order': strictOrder,
  batch,
  outbox: outboxBench,
} as const;
const only = values.only ? values.only.split(',') : undefined;
const unknown = only?.filter((n) => !(n in SCENARIOS)) ?? [];
if (unknown.length) {
  console.error(
    `--only: unknown scenario(s) ${unknown.join(', ')}; known: ${Object.keys(SCENARIOS).join(', ')}`,
  );
  process.exit(2);
}
const suffix = size.quick ? '-quick' : '';
const s = await benchStack();
await deleteBenchTopics(s);

// Start from the recorded results of the same size, so `--only` updates one row of the summary.
const results: Record<string, Record<string, unknown>> = {};
for (const name of Object.keys(SCENARIOS)) {
  try {
    const r = JSON.parse(
      readFileSync(join(import.meta.dirname, 'results', `${name}${suffix}.json`), 'utf8'),
    ) as Record<string, unknown>;
    if ((r.quick === true) === size.quick) results[name] = r;
  } catch {
    // not recorded yet
  }
}

const failed: string[] = [];
for (const [name, fn] of Object.entries(SCENARIOS)) {
  if (only && !only.includes(name)) continue;
  const t0 = Date.now();
  console.error(`▶ ${name}${size.quick ? ' (quick)' : ''}, ${size.rounds} round(s)`);
  try {
    const r: Record<string, unknown> = { ...(await fn(s, size)), quick: size.quick };
    // A scenario that measured but lost a reference tool still records what it has, and fails.
    if (Array.isArray(r.errors) && r.errors.length) failed.push(name);
    results[name] = { machine: machine(), ...r };
    writeResult(`${name}${suffix}`, r);
    console.error(`  ${JSON.stringify(r)}`);
  } catch (error) {
    failed.push(name);
    results[name] = { scenario: name, error: (error as Error).message, quick: size.quick };
    console.error(`  failed: ${(error as Error).stack ?? error}`);
  }
  console.error(`  (${Math.round((Date.now() - t0) / 1000)} s)`);
  await deleteBenchTopics(s).catch((e: Error) => console.error(`  deleting topics: ${e.message}`));
}

/** A figure as `median (min–max)`, nested objects as `key: value` lists. */
function show(v: unknown): string {
  if (v === null || v === undefined) return '-';
  if (typeof v !== 'object') return String(v);
  const o = v as Record<string, unknown>;
  if ('median' in o && 'min' in o && 'max' in o) return `${o.median} (${o.min}–${o.max})`;
  if (Array.isArray(v)) return v.map(show).join('; ');
  return Object.entries(o)
    .map(([k, x]) => `${k}: ${show(x)}`)
    .join(', ');
}
const HIDDEN = ['scenario', 'target', 'met', 'aimMet', 'quick', 'machine', 'strand', 'baselines', 'order'];
const HIDDEN_ALSO = ['runs', 'results', 'published', 'producer', 'worker'];
const fmt = (r: Record<string, unknown>) =>
  Object.entries(r)
    .filter(([k]) => !HIDDEN.includes(k) && !HIDDEN_ALSO.includes(k))
    .map(([k, v]) => `${k}: ${show(v)}`)
    .join('<br>');

const m = machine();
const lines = [
  `# Benchmark results${size.quick ? ' (quick)' : ''}`,
  '',
  `${m.at} · commit ${m.commit}${m.dirty ? ' (dirty work tree)' : ''} · node ${m.node} · ${m.cores} cores (${m.cpu}) · ${m.memoryGiB} GiB · ${m.java}`,
  'Broker, registry and benchmark share this machine; compare ratios measured in the same run.',
  'Every figure: median (min–max) of interleaved runs; Strand from dist/ in a plain node process.',
  '',
  '| scenario | result | target | met | commit |',
  '|---|---|---|---|---|',
];
for (const [name, r] of Object.entries(results)) {
  const rm = r.machine as { commit?: string; dirty?: boolean } | undefined;
  const met = r.error ? 'error' : r.met === undefined ? '-' : r.met ? 'yes' : 'no';
  lines.push(
    `| ${name} | ${r.error ? `failed: ${r.error}` : fmt(r)} | ${r.target ?? '(report)'} | ${met} | ${rm?.commit ?? '-'}${rm?.dirty ? ' dirty' : ''} |`,
  );
}
const lat = results.latency as
  | {
      results?: {
        targetRate: number;
        achievedRate: unknown;
        enqueueToStartMs: Record<string, unknown>;
        enqueueToCompletedMs: Record<string, unknown>;
      }[];
    }
  | undefined;
if (lat?.results) {
  lines.push('', '## Latency (ms, median (min–max) of the runs)', '');
  lines.push('| rate (jobs/s) | achieved | start p50 | start p99 | completed p99 |', '|---|---|---|---|---|');
  for (const x of lat.results) {
    lines.push(
      `| ${x.targetRate} | ${show(x.achievedRate)} | ${show(x.enqueueToStartMs.p50)} | ${show(x.enqueueToStartMs.p99)} | ${show(x.enqueueToCompletedMs.p99)} |`,
    );
  }
}
const kc = results['key-concurrency'] as
  | { runs?: { mode: string; keys: number | null; seconds: unknown }[]; jobs?: number }
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
    lines.push(`| ${label} | ${show(r.seconds)} | ${pub[label] ?? '-'} |`);
  }
}
const mem = results.memory as
  | { results?: { backlog: number; peakRssMiB: unknown; seconds: unknown }[] }
  | undefined;
if (mem?.results) {
  lines.push(
    '',
    '## Memory (worker process, 1 ms handler)',
    '',
    '| backlog | peak RSS (MiB) | seconds |',
    '|---|---|---|',
  );
  for (const r of mem.results) lines.push(`| ${r.backlog} | ${show(r.peakRssMiB)} | ${show(r.seconds)} |`);
}
const file = join(import.meta.dirname, 'results', `summary${suffix}.md`);
writeFileSync(file, `${lines.join('\n')}\n`);
console.log(lines.join('\n'));
console.error(`wrote ${file}`);
if (failed.length) console.error(`failed: ${failed.join(', ')}`);
process.exit(failed.length ? 1 : 0);
