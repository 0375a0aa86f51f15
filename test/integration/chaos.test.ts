import { describe, expect, it } from 'vitest';
import { badInputScenario, crashScenario, failoverScenario } from '../../chaos/scenarios.js';
import { stack } from '../support/helpers.js';

// Reduced sizes of `npm run test:chaos`; the verdict's failures say what broke.
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

describe('chaos: broker failover (reduced size, own 3-node cluster)', () => {
  it('leader SIGKILLed mid-run: every acknowledged enqueue completed exactly once, nothing dead-lettered', async () => {
    const v = await failoverScenario(stack().registryUrl, { jobs: 3000, rate: 300, kills: 1, downMs: 5000 });
    console.info(JSON.stringify(v.figures));
    expect(v.failures).toEqual([]);
    expect(v.figures.acknowledged).toBe(3000);
    expect(v.passed).toBe(true);
  }, 420_000);
});
