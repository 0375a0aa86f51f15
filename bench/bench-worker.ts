/** Worker module for the memory benchmark: `strand worker bench/bench-worker.ts`, settings in STRAND_BENCH. */
import { defineWorker } from '../src/worker/options.js';

const s = JSON.parse(process.env.STRAND_BENCH ?? '{}') as { topic: string; groupId: string; sleepMs: number };

export default defineWorker({
  topic: s.topic,
  groupId: s.groupId,
  concurrency: 16,
  retry: { tiers: [] },
  commitIntervalMs: 250,
  handler: async () => {
    await new Promise((r) => setTimeout(r, s.sleepMs));
  },
});
