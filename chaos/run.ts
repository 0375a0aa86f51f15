/**
 * Chaos scenarios against the real stack: `npm run test:chaos` (full size) or
 * `npm run test:chaos -- --quick`. Each scenario prints a verdict and writes
 * chaos/results/<scenario>.json; the exit code is 1 when any scenario fails.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { machine } from '../bench/env.js';
import { stackUp } from '../src/devstack/index.js';
import {
  badInputScenario,
  crashScenario,
  failoverScenario,
  outageScenario,
  rebalanceScenario,
  soakScenario,
  type Verdict,
} from './scenarios.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean' }, only: { type: 'string' } } });
const quick = values.quick === true;
const only = values.only ? new Set(values.only.split(',')) : undefined;
let brokers = process.env.STRAND_BROKERS?.split(',');
let registryUrl = process.env.STRAND_REGISTRY_URL;
if (!brokers || !registryUrl) {
  const { info } = await stackUp({ onProgress: (l) => console.error(`[devstack] ${l}`) });
  brokers = info.brokers;
  registryUrl = info.registryUrl;
}
const s = { brokers, registryUrl };
const dir = join(import.meta.dirname, 'results');
mkdirSync(dir, { recursive: true });
const verdicts: Verdict[] = [];
const scenarios: [string, () => Promise<Verdict>][] = [
  [
    'crash',
    () =>
      crashScenario(
        s,
        quick
          ? {
              jobs: 4000,
              keys: 200,
              workers: 3,
              kills: 3,
              concurrency: 2,
              handlerMs: [5, 15],
              killEveryMs: [2000, 3000],
            }
          : { jobs: 50_000, keys: 200, workers: 3, kills: 10, concurrency: 4, handlerMs: [5, 15] },
      ),
  ],
  [
    'failover',
    () =>
      failoverScenario(
        registryUrl,
        quick
          ? { jobs: 6000, rate: 300, kills: 2, downMs: 5000 }
          : { jobs: 30_000, rate: 500, kills: 4, downMs: 10_000 },
      ),
  ],
  ['rebalance', () => rebalanceScenario(s, quick ? { jobs: 6000, keys: 200 } : { jobs: 30_000, keys: 200 })],
  [
    'outage',
    () =>
      outageScenario(
        s,
        quick ? { jobs: 9000, rate: 200, outageMs: 8000 } : { jobs: 40_000, rate: 500, outageMs: 20_000 },
      ),
  ],
  [
    'soak',
    () =>
      soakScenario(
        s,
        quick ? { minutes: 2, rate: 200, warmupMs: 30_000 } : { minutes: 10, rate: 300, warmupMs: 120_000 },
      ),
  ],
  [
    'bad-input',
    () =>
      badInputScenario(
        s,
        quick
          ? { valid: 2000, bad: 2000, keys: 100, rssLimitMiB: 300 }
          : { valid: 10_000, bad: 10_000, keys: 200, rssLimitMiB: 300 },
      ),
  ],
];
for (const [name, run] of scenarios) {
  if (only && !only.has(name)) continue;
  console.error(`▶ ${name}${quick ? ' (quick)' : ''}`);
  const v = await run();
  verdicts.push(v);
  writeFileSync(
    join(dir, `${name}${quick ? '-quick' : ''}.json`),
    `${JSON.stringify({ machine: machine(), quick, ...v }, null, 2)}\n`,
  );
  console.log(
    `${v.passed ? 'PASS' : 'FAIL'} ${name} ${JSON.stringify(v.figures)}${v.failures.length ? ` — ${v.failures.join('; ')}` : ''}`,
  );
}
process.exit(verdicts.every((v) => v.passed) ? 0 : 1);
