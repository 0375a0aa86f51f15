/**
 * Chaos scenarios against the real stack: `npm run test:chaos` (full size) or
 * `npm run test:chaos -- --quick`. Each scenario prints a verdict and writes
 * chaos/results/<scenario>.json; its workers' event traces go to
 * chaos/results/<run>/traces/<scenario>/ and are checked with the simulation's invariants
 * (chaos/traces.ts: a violation fails the scenario). The exit code is 1 when any scenario fails.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { machine } from '../bench/env.js';
import { benchStack } from '../bench/lib.js';
import { longJobScenario, releaseUnderLoadScenario } from './core-defects.js';
import { exactlyOnceScenario } from './exactly-once.js';
import { outboxScenario } from './outbox.js';
import { parkingTakeoverScenario } from './parking-takeover.js';
import {
  badInputScenario,
  crashScenario,
  failoverScenario,
  outageScenario,
  rebalanceScenario,
  soakScenario,
  strictOrderScenario,
  type Verdict,
} from './scenarios.js';
import { chaosSizes } from './sizes.js';
import { tracedScenario } from './traces.js';

const { values } = parseArgs({
  options: { quick: { type: 'boolean' }, only: { type: 'string' }, help: { type: 'boolean' } },
});
if (values.help) {
  console.log(`npm run test:chaos [-- --quick] [--only crash,strict-order,...]
  --quick   reduced sizes (the ones npm test runs)
  --only    scenarios: crash failover rebalance outage soak bad-input strict-order
            parking-takeover long-job release-under-load outbox exactly-once
Results: chaos/results/<scenario>[-quick].json; traces: chaos/results/run-<time>[-quick]/traces/<scenario>/`);
  process.exit(0);
}
const quick = values.quick === true;
const command = [
  'npm run test:chaos',
  ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : []),
].join(' ');
const only = values.only ? new Set(values.only.split(',')) : undefined;
const { brokers, registryUrl } = await benchStack();
const s = { brokers, registryUrl };
const size = quick ? chaosSizes.quick : chaosSizes.full;
const dir = join(import.meta.dirname, 'results');
mkdirSync(dir, { recursive: true });
const runDir = join(dir, `run-${new Date().toISOString().replace(/[:.]/g, '-')}${quick ? '-quick' : ''}`);
const verdicts: Verdict[] = [];
const scenarios: [string, () => Promise<Verdict>][] = [
  ['crash', () => crashScenario(s, size.crash)],
  ['failover', () => failoverScenario(registryUrl, size.failover)],
  ['rebalance', () => rebalanceScenario(s, size.rebalance)],
  ['outage', () => outageScenario(s, size.outage)],
  ['soak', () => soakScenario(s, size.soak)],
  ['bad-input', () => badInputScenario(s, size.badInput)],
  ['strict-order', () => strictOrderScenario(s, size.strictOrder)],
  ['parking-takeover', () => parkingTakeoverScenario(s, size.parkingTakeover)],
  ['long-job', () => longJobScenario(s, size.longJob)],
  ['release-under-load', () => releaseUnderLoadScenario(s, size.releaseUnderLoad)],
  ['outbox', () => outboxScenario(s, size.outbox)],
  ['exactly-once', () => exactlyOnceScenario(s, size.exactlyOnce)],
];
for (const [name, run] of scenarios) {
  if (only && !only.has(name)) continue;
  console.error(`▶ ${name}${quick ? ' (quick)' : ''}`);
  const v = await tracedScenario(join(runDir, 'traces', name), run);
  verdicts.push(v);
  // What the figures come from: the commit, whether the work tree differed from it (read when the run
  // started), when, and the command.
  const m = machine();
  const evidence = { commit: m.commit, dirty: m.dirty, date: new Date().toISOString(), command };
  writeFileSync(
    join(dir, `${name}${quick ? '-quick' : ''}.json`),
    `${JSON.stringify({ ...evidence, machine: m, quick, ...v }, null, 2)}\n`,
  );
  console.log(
    `${v.passed ? 'PASS' : 'FAIL'} ${name} ${JSON.stringify(v.figures)}${v.failures.length ? ` — ${v.failures.join('; ')}` : ''}`,
  );
}
process.exit(verdicts.every((v) => v.passed) ? 0 : 1);
