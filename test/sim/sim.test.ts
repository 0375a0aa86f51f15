import { describe, expect, it } from 'vitest';
import { formatViolation, runSeed } from './sim.js';

/**
 * 5,000 seeds of the deterministic simulation (test/sim/README.md): the real WorkerCore against
 * the Kafka model with random handler outcomes and faults. A failure names the seed and the steps
 * that led to it; replay it with `node --import tsx test/sim/run.ts --seed S --verbose`.
 */
const CHUNK = 2500;

async function runSeeds(from: number, count: number): Promise<void> {
  for (let seed = from; seed < from + count; seed++) {
    const result = await runSeed(seed);
    if (result.violation) expect.fail(formatViolation(result.violation));
  }
}

describe('deterministic simulation', () => {
  it(`seeds 1..${CHUNK}`, () => runSeeds(1, CHUNK), 90_000);
  it(`seeds ${CHUNK + 1}..${2 * CHUNK}`, () => runSeeds(CHUNK + 1, CHUNK), 90_000);
});
