/**
 * What OpenTelemetry tracing costs a worker: `npm run bench:tracing` (add `-- --quick`).
 * No-op throughput of a Strand worker (from dist/, bench/child.mjs) over the same backlog with no
 * SDK registered, with an SDK registered (BasicTracerProvider + BatchSpanProcessor with its default
 * settings + an exporter that drops spans; bench/otel-sdk.mjs), and with that SDK but
 * `tracing: false`. The backlog is enqueued with an SDK registered here, so every record carries a
 * `traceparent` the traced worker continues. Rounds are interleaved (the order rotates each round);
 * writes bench/results/tracing.json (quick: tracing-quick.json).
 */
import { parseArgs } from 'node:util';
import { registerTracing } from '../test/support/otel.js';
import { writeResult } from './env.js';
import { benchStack, benchTopic, deleteBenchTopics, fill, round, stats } from './lib.js';
import { STRAND_DEFAULTS, strandRun } from './scenarios.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean' }, rounds: { type: 'string' } } });
const quick = values.quick === true;
const rounds = Number(values.rounds ?? (quick ? 3 : 5));
if (!Number.isInteger(rounds) || rounds < 1) {
  console.error(`--rounds: expected a positive integer, got ${values.rounds}`);
  process.exit(2);
}
const jobs = quick ? 30_000 : 200_000;
const partitions = 12;
const keys = 1000;

const s = await benchStack();
await deleteBenchTopics(s);
const topic = await benchTopic(s, 'tracing', partitions);
const unregister = registerTracing({
  export: (_spans, done) => done({ code: 0 }),
  shutdown: () => Promise.resolve(),
});
await fill(s, topic, jobs, keys);
await unregister();

const VARIANTS = {
  none: { otel: false, options: STRAND_DEFAULTS },
  sdk: { otel: true, options: STRAND_DEFAULTS },
  sdkTracingOff: { otel: true, options: { ...STRAND_DEFAULTS, tracing: false } },
} as const;
type Variant = keyof typeof VARIANTS;
const names = Object.keys(VARIANTS) as Variant[];
const runs: Record<Variant, number[]> = { none: [], sdk: [], sdkTracingOff: [] };
const costs: number[] = [];
let spansExported = 0;
for (let r = 0; r < rounds; r++) {
  const order = [...names.slice(r % names.length), ...names.slice(0, r % names.length)];
  const round: Partial<Record<Variant, number>> = {};
  for (const name of order) {
    const { otel, options } = VARIANTS[name];
    const result = await strandRun(s, topic, jobs, 'noop', options, { otel });
    round[name] = Number(result.jobsPerSecond);
    runs[name].push(round[name]);
    if (name === 'sdk') spansExported = Number(result.spansExported ?? 0);
    console.error(`  round ${r + 1} ${name}: ${Math.round(round[name])} jobs/s`);
  }
  costs.push((1 - round.sdk! / round.none!) * 100);
}
const none = stats(runs.none);
const sdk = stats(runs.sdk);
const result = {
  scenario: 'tracing',
  quick,
  jobs,
  partitions,
  keys,
  rounds,
  order: 'each round: none, sdk, sdkTracingOff, rotated by one per round; a new group each run',
  strand: { from: 'dist/', handler: 'no-op', options: STRAND_DEFAULTS },
  variants: {
    none: 'no OpenTelemetry SDK registered',
    sdk: 'BasicTracerProvider, BatchSpanProcessor (defaults), exporter that drops spans, AsyncLocalStorageContextManager, W3C propagator',
    sdkTracingOff: 'the same SDK, worker option tracing: false',
  },
  jobsPerSecond: { none, sdk, sdkTracingOff: stats(runs.sdkTracingOff) },
  /** Throughput lost with the SDK registered, from the medians. */
  costPercent: round((1 - sdk.median / none.median) * 100, 1),
  costPercentPerRound: stats(costs, 1),
  spansExportedLastSdkRun: spansExported,
};
const file = writeResult(quick ? 'tracing-quick' : 'tracing', result);
console.log(JSON.stringify(result, null, 2));
console.error(`wrote ${file}`);
await deleteBenchTopics(s);
process.exit(0);
