import { describe, expect, it } from 'vitest';
import { badInputScenario, crashScenario } from '../../chaos/scenarios.js';
import { stack } from '../support/helpers.js';

// Reduced sizes of `npm run test:chaos`; the verdict's failures say what broke. Broker failover
// (its own 3-node cluster) runs only there: in one CI run of five its workers stalled after a
// leader kill 5 s into a fresh cluster, an open problem recorded in issue 10, and a CI run must
// not depend on it.
describe('chaos (reduced size)', () => {
  it('worker crashes: 3 workers, SIGKILL and restart, nothing lost, order held, no duplicate side effect', async () => {
    const v = await crashScenario(stack(), {
      jobs: 4000,
      keys: 200,
      workers: 3,
      kills: 3,
      concurrency: 2,
      handlerMs: [5, 15],
      killEveryMs: [2000, 3000],
    });
    console.info(JSON.stringify(v.figures));
    expect(v.failures).toEqual([]);
    expect(v.figures.kills).toBe(3);
    expect(v.passed).toBe(true);
  }, 300_000);

  it('bad input at volume: every bad record dead-lettered with its reason, every valid job done, RSS bounded', async () => {
    const v = await badInputScenario(stack(), { valid: 1500, bad: 1500, keys: 60, rssLimitMiB: 300 });
    console.info(JSON.stringify(v.figures));
    expect(v.failures).toEqual([]);
    expect(v.passed).toBe(true);
  }, 300_000);
});
