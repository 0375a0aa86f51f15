/**
 * Runs seeds of the deterministic simulation.
 *
 *   node --import tsx test/sim/run.ts --seeds N [--from K] [--workers W]
 *   node --import tsx test/sim/run.ts --seed S [--verbose]
 *
 * Prints `seeds run, violations, seconds`; the first violation (lowest seed) with its trace; exits
 * 1 on a violation. `--seed S` replays one seed exactly; `--verbose` prints its whole trace.
 */

import { parseArgs } from 'node:util';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { scenarioSettings } from './scenario.js';
import { checkSettings, formatViolation, runSeed, type Violation } from './sim.js';

interface Slice {
  from: number;
  count: number;
  stride: number;
  offset: number;
  /** Go on after a violation, counting violations by kind. */
  survey?: boolean;
}

interface SliceResult {
  run: number;
  steps: number;
  /** The first violation (the lowest seed). */
  violation: Violation | undefined;
  violations: number;
  /** Survey: per kind, how many seeds and the lowest one. */
  kinds: Record<string, { count: number; seed: number }>;
}

interface Settings {
  checks: typeof checkSettings;
  scenario: typeof scenarioSettings;
}

/** Any rejection nobody handled is a bug of the run (Node would crash on it); the seed that caused it is reported. */
let unhandled: unknown;
process.on('unhandledRejection', (reason) => {
  unhandled ??= reason;
});

/**
 * A seed's result, with the violation a rejection nobody handled made (`unhandled-rejection`) if
 * the seed found none of its own.
 */
async function runOne(seed: number): Promise<{ steps: number; violation: Violation | undefined }> {
  const result = await runSeed(seed);
  // Let a rejection nobody handled surface before the next seed starts.
  await new Promise<void>((resolve) => setImmediate(resolve));
  let violation = result.violation;
  if (!violation && unhandled !== undefined) {
    const reason = unhandled;
    violation = {
      seed,
      kind: 'unhandled-rejection',
      text: reason instanceof Error ? (reason.stack ?? reason.message) : String(reason),
      at: result.virtualMs,
      trace: [],
    };
  }
  unhandled = undefined;
  return { steps: result.steps, violation };
}

/**
 * Runs `from + offset + i*stride` for i < count; stops at the first violation unless surveying.
 * Stack traces are formatted without source maps meanwhile (tsx turns them on; mapping every stack
 * a seed reads, e.g. the error stack header of each routed job, was about 6 % of a seed): only
 * stack text changes, never what a seed does. The first violation's seed is run again with them,
 * so its report reads exactly as `--seed S` replays it.
 */
export async function runSlice(s: Slice): Promise<SliceResult> {
  const out: SliceResult = { run: 0, steps: 0, violation: undefined, violations: 0, kinds: {} };
  const sourceMaps = process.sourceMapsEnabled;
  process.setSourceMapsEnabled(false);
  try {
    for (let i = 0; i < s.count; i++) {
      const seed = s.from + s.offset + i * s.stride;
      const result = await runOne(seed);
      out.run++;
      out.steps += result.steps;
      let violation = result.violation;
      if (!violation) continue;
      if (!out.violation && sourceMaps) {
        process.setSourceMapsEnabled(true);
        violation = (await runOne(seed)).violation ?? violation;
        process.setSourceMapsEnabled(false);
      }
      out.violations++;
      out.violation ??= violation;
      const k = out.kinds[violation.kind] ?? { count: 0, seed };
      k.count++;
      out.kinds[violation.kind] = k;
      if (!s.survey) break;
    }
  } finally {
    process.setSourceMapsEnabled(sourceMaps);
  }
  return out;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seeds: { type: 'string', default: '1000' },
      seed: { type: 'string' },
      from: { type: 'string', default: '1' },
      workers: { type: 'string', default: '1' },
      verbose: { type: 'boolean', default: false },
      'loose-bytes': { type: 'boolean', default: false },
      'loose-tier-order': { type: 'boolean', default: false },
      'no-expel': { type: 'boolean', default: false },
      'reset-pauses': { type: 'boolean', default: false },
      survey: { type: 'boolean', default: false },
      allow: { type: 'string', default: '' },
    },
  });
  checkSettings.allow = values.allow.split(',').filter(Boolean);
  scenarioSettings.expel = !values['no-expel'];
  scenarioSettings.pauseSurvivesRejoin = !values['reset-pauses'];
  checkSettings.strictBytes = !values['loose-bytes'];
  checkSettings.tierOrder = !values['loose-tier-order'];
  const started = performance.now();
  if (values.seed !== undefined) {
    const seed = Number(values.seed);
    const result = await runSeed(seed, { verbose: values.verbose });
    const seconds = (performance.now() - started) / 1000;
    if (result.violation) console.log(formatViolation(result.violation));
    console.log(
      `seed ${seed}: ${result.steps} steps, ${result.virtualMs} virtual ms, ${JSON.stringify(result.stats)}`,
    );
    console.log(`seeds run: 1, violations: ${result.violation ? 1 : 0}, seconds: ${seconds.toFixed(2)}`);
    process.exitCode = result.violation ? 1 : 0;
    return;
  }
  const count = Number(values.seeds);
  const from = Number(values.from);
  const workers = Math.max(1, Number(values.workers));
  let results: SliceResult[];
  if (workers === 1) {
    results = [await runSlice({ from, count, stride: 1, offset: 0, survey: values.survey })];
  } else {
    results = await Promise.all(
      Array.from({ length: workers }, (_, w) => {
        const slice: Slice = {
          from,
          stride: workers,
          offset: w,
          count: Math.ceil((count - w) / workers),
          survey: values.survey,
        };
        const settings: Settings = { checks: checkSettings, scenario: scenarioSettings };
        return new Promise<SliceResult>((resolve, reject) => {
          // A worker thread does not inherit `--import tsx`: it registers tsx, then loads this file.
          const boot = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))}).then((tsx) => { tsx.register(); return import(${JSON.stringify(import.meta.url)}); })`;
          const worker = new Worker(boot, { eval: true, workerData: { slice, settings } });
          worker.once('message', (r: SliceResult) => resolve(r));
          worker.once('error', reject);
        });
      }),
    );
  }
  const seconds = (performance.now() - started) / 1000;
  const run = results.reduce((n, r) => n + r.run, 0);
  const steps = results.reduce((n, r) => n + r.steps, 0);
  const violations = results.reduce((n, r) => n + r.violations, 0);
  const first = results.flatMap((r) => (r.violation ? [r.violation] : [])).sort((a, b) => a.seed - b.seed)[0];
  if (first) console.log(formatViolation(first));
  if (values.survey) {
    const kinds: Record<string, { count: number; seed: number }> = {};
    for (const r of results)
      for (const [kind, k] of Object.entries(r.kinds)) {
        const t = kinds[kind] ?? { count: 0, seed: k.seed };
        t.count += k.count;
        t.seed = Math.min(t.seed, k.seed);
        kinds[kind] = t;
      }
    for (const [kind, k] of Object.entries(kinds).sort((a, b) => b[1].count - a[1].count))
      console.log(`  ${kind}: ${k.count} seeds (first: seed ${k.seed})`);
  }
  console.log(
    `seeds run: ${run}, violations: ${violations}, seconds: ${seconds.toFixed(1)} (${(run / seconds).toFixed(0)} seeds/s, ${steps} steps)`,
  );
  process.exitCode = violations > 0 ? 1 : 0;
}

if (isMainThread) {
  await main();
} else {
  const data = workerData as { slice: Slice; settings: Settings };
  Object.assign(checkSettings, data.settings.checks);
  Object.assign(scenarioSettings, data.settings.scenario);
  const result = await runSlice(data.slice);
  parentPort!.postMessage(result);
}
