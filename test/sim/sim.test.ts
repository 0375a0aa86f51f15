import { describe, expect, it } from 'vitest';
import { formatViolation, runSeed } from './sim.js';

/**
 * 5,000 seeds of the deterministic simulation (test/sim/README.md): the real WorkerCore against
 * the Kafka model with random handler outcomes and faults. A failure names the seed and the steps
 * that led to it; replay it with `node --import tsx test/sim/run.ts --seed S --verbose`.
 */
const CHUNK = 1000;

async function runSeeds(from: number, count: number): Promise<void> {
  for (let seed = from; seed < from + count; seed++) {
    const result = await runSeed(seed);
    if (result.violation) expect.fail(formatViolation(result.violation));
  }
}

describe('deterministic simulation', () => {
  // Five chunks of 1,000 (about 20 s each alone, several times that next to the broker under load).
  for (let from = 1; from <= 5 * CHUNK; from += CHUNK)
    it(`seeds ${from}..${from + CHUNK - 1}`, () => runSeeds(from, CHUNK), 150_000);
});
