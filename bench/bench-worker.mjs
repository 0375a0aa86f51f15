/**
 * Worker module for the memory benchmark, plain JavaScript so the CLI loads it (and Strand, from
 * dist/) without tsx: `node dist/cli/main.js worker bench/bench-worker.mjs`, settings in STRAND_BENCH.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { defineWorker } from '../dist/index.js';

const s = JSON.parse(process.env.STRAND_BENCH ?? '{}');

export default defineWorker({
  topic: s.topic,
  groupId: s.groupId,
  concurrency: 16,
  retry: { tiers: [] },
  commitIntervalMs: 250,
  handler: () => sleep(s.sleepMs),
});
