import { describe, expect, it } from 'vitest';
import { testDeadline, waitUntil } from '../../support/helpers.js';

describe("waitUntil gives up before the test's timeout", () => {
  it('a wait longer than the test has left ends 5 s before the timeout, with its own message', async () => {
    const t0 = Date.now();
    expect(testDeadline()).toBeGreaterThan(t0);
    await expect(waitUntil(() => false, { timeoutMs: 60_000, what: 'nothing' })).rejects.toThrow(
      "timed out waiting for nothing, cut short by the test's timeout (last: false)",
    );
    expect(Date.now() - t0).toBeLessThan(7000);
  }, 7000);

  it('a wait that fits keeps its own timeout', async () => {
    const t0 = Date.now();
    await expect(waitUntil(() => 0, { timeoutMs: 300, intervalMs: 50, what: 'zero' })).rejects.toThrow(
      'timed out waiting for zero (last: 0)',
    );
    expect(Date.now() - t0).toBeLessThan(2000);
  });
});
