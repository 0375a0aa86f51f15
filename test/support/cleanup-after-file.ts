/**
 * A setup file of the integration tests: after each test file, everything made from the names it
 * marked (`uniqueName`, `cleanUpAfterFile`) is deleted — topics, consumer groups, registry subjects,
 * worker status and control records — so the stack, its console and registry are left as they
 * were. What cannot be deleted (a group whose worker still runs) fails the file with the list.
 */
import { afterAll, expect } from 'vitest';
import { cleanUpNames, describeTraces, isEmpty } from './cleanup.js';
import { namesMadeHere, stack } from './helpers.js';

afterAll(async () => {
  const names = namesMadeHere();
  if (!names.length) return;
  const t0 = Date.now();
  const left = await cleanUpNames(stack(), names);
  if (process.env.STRAND_TEST_CLEANUP_LOG)
    process.stderr.write(`[cleanup] ${expect.getState().testPath}: ${Date.now() - t0} ms\n`);
  if (!isEmpty(left)) throw new Error(`left on the stack after this file's tests: ${describeTraces(left)}`);
}, 120_000);
