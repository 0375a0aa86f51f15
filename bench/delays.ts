/**
 * `npm run bench:delays [-- --quick]`: delayed-job accuracy and cost. A Strand worker (dist/, its
 * own process) runs jobs enqueued with delays of 1 s, 3 s, 8 s, 30 s, 2 min, 5 min and 10 min
 * (quick: 1 s, 3 s, 8 s, 30 s), interleaved with as many 1 h jobs (which stay in their buckets)
 * over 6 partitions and the default delay buckets; each job reports how long after its due time it
 * started. The cost is the records the buckets took per delayed job
 * (measured) plus the job-topic record, and the records a 24 h delay and delays spread from 1 s to
 * 24 h write (computed by the same bucket choice the worker makes). Writes
 * bench/results/delays.json (quick: delays-quick.json).
 */
import { parseArgs } from 'node:util';
import { createKafka } from '../src/kafka/client.js';
import { createJobTopics } from '../src/kafka/topics.js';
import {
  DEFAULT_DELAY_BUCKETS_MS,
  delayBucketsFor,
  delayLabel,
  writesPerDelayedJob,
} from '../src/topology/delays.js';
import { writeResult } from './env.js';
import { benchProducer, benchStack, payment } from './lib.js';
import { STRAND_DEFAULTS, strandRun } from './scenarios.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean' }, jobs: { type: 'string' } } });
const quick = values.quick === true;
const delays = quick ? [1000, 3000, 8000, 30_000] : [1000, 3000, 8000, 30_000, 120_000, 300_000, 600_000];
const HOUR = 3_600_000;
const perDelay = Number(values.jobs ?? (quick ? 100 : 200));

const s = await benchStack();
const topic = `bench-delays-${Date.now().toString(36)}`;
await createJobTopics(s.conn, {
  topic,
  partitions: 6,
  tierDelays: [],
  delayBucketsMs: [...DEFAULT_DELAY_BUCKETS_MS],
});
const total = delays.length * perDelay;
const producer = await benchProducer(s, topic);
let enqueued: Promise<void> | undefined;
const run = strandRun(s, topic, total, 'delayed', STRAND_DEFAULTS, {
  timeoutMs: Math.max(...delays) + 180_000,
  // Interleaved: each batch of 50 mixes every delay, spread over the first ~2 s.
  onReady: () => {
    enqueued = (async () => {
      const jobs = [];
      const mix = [...delays, HOUR];
      for (let i = 0; i < perDelay * mix.length; i++) {
        const delay = mix[i % mix.length]!;
        jobs.push({ key: `k${i % 500}`, data: payment(i, 500, delayLabel(delay)), delay });
      }
      for (let i = 0; i < jobs.length; i += 50) {
        await producer.enqueueMany(jobs.slice(i, i + 50));
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
  },
});
const result = await run;
await enqueued;
await producer.disconnect();

// Records the delay buckets took (every hop) per delayed job, from their log-end offsets.
const admin = createKafka(s.conn).admin();
await admin.connect();
let bucketRecords = 0;
for (const b of delayBucketsFor(topic, DEFAULT_DELAY_BUCKETS_MS)) {
  for (const o of await admin.fetchTopicOffsets(b.topic)) bucketRecords += Number(o.high);
}
await admin.deleteTopics({
  topics: (await admin.listTopics()).filter((t) => t.startsWith(topic)),
});
await admin.disconnect();

const buckets = delayBucketsFor(topic, DEFAULT_DELAY_BUCKETS_MS);
// Delays spread log-uniformly from 1 s to 24 h: the mean and worst count of records per job.
const spread: number[] = [];
for (let i = 0; i <= 2000; i++)
  spread.push(writesPerDelayedJob(buckets, Math.round(1000 * 86_400 ** (i / 2000))));
const late = result.startMinusDueMs as Record<string, { p50: number; p99: number; min: number; max: number }>;
const worstP99 = Math.max(...Object.values(late).map((l) => l.p99));
const earliest = Math.min(...Object.values(late).map((l) => l.min));
const out = {
  scenario: 'delays',
  jobsPerDelay: perDelay,
  alsoEnqueued: `${perDelay} jobs at 1h (not run; they wait in their bucket)`,
  partitions: 6,
  buckets: buckets.map((b) => delayLabel(b.ms)),
  startMinusDueMs: late,
  recordsPerDelayedJob: {
    // The 1 h jobs wrote their first bucket record only.
    measured: Number(((bucketRecords - perDelay + total) / total).toFixed(2)),
    measuredOver: delays.map(delayLabel),
    delay24h: writesPerDelayedJob(buckets, 86_400_000),
    logUniform1sTo24h: {
      mean: Number((spread.reduce((a, b) => a + b, 0) / spread.length).toFixed(1)),
      max: Math.max(...spread),
    },
  },
  target: 'no job starts before its due time; p99 start - due <= 1000 ms',
  met: earliest >= 0 && worstP99 <= 1000,
  quick,
};
const file = writeResult(quick ? 'delays-quick' : 'delays', out);
console.log(JSON.stringify(out, null, 2));
console.log(`wrote ${file}`);
