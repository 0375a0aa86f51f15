/**
 * What a new owner pays to read a big parking partition (strict key order), and what a parking
 * read by offset costs: `npm run bench:parking` (writes `bench/results/parking-read.json`). Sets up
 * a parking topic of two partitions — 401,406 records and 190,880 records (under the 200,000 cap
 * reads had before) — with kafkajs' own producer; `-- --topic T` measures an existing one again
 * (the same records through another build), `-- --keep` leaves it, `-- --out X` writes
 * `parking-read-X.json` instead.
 */
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createKafka } from '../src/kafka/client.js';
import { KafkaParkingPort } from '../src/kafka/parking-port.js';
import { PARKED_TOPIC_CONFIGS } from '../src/kafka/topics.js';
import { systemClock } from '../src/timing/clock.js';
import { ParkingState } from '../src/worker/parking.js';
import { newestParkingChanges, parkedBacklog } from '../test/support/parking-records.js';
import { rawProduceBulk } from '../test/support/raw-kafka.js';
import { machine } from './env.js';
import { benchStack, quiet } from './lib.js';

const { values } = parseArgs({
  options: { topic: { type: 'string' }, keep: { type: 'boolean' }, out: { type: 'string' } },
});
const GROUP = 'g';
const LATE = 10_000_000;
const sizes = [
  { partition: 0, keys: 1000, followers: 400 },
  { partition: 1, keys: 475, followers: 400 },
];
const s = await benchStack();
const kafka = createKafka(s.conn);
const admin = kafka.admin();
await admin.connect();
const topic = values.topic ?? `bench-parkread-${Date.now().toString(36)}.parked`;
let records = 0;
if (!values.topic) {
  await admin.createTopics({
    waitForLeaders: true,
    topics: [{ topic, numPartitions: 2, configEntries: PARKED_TOPIC_CONFIGS }],
  });
  // Record batches of 500, as a worker's parking writes are (src/kafka/parking-port.ts).
  const batches = { chunk: 500, inFlight: 8 };
  for (const z of sizes)
    records += await rawProduceBulk(
      s.brokers,
      topic,
      parkedBacklog(GROUP, z.partition, z.keys, z.followers),
      batches,
    );
  for (const z of sizes)
    records += await rawProduceBulk(
      s.brokers,
      topic,
      newestParkingChanges(GROUP, z.partition, z, LATE),
      batches,
    );
}
const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 5 });
await producer.connect();
const port = new KafkaParkingPort(s.conn, admin, producer, topic);
let running = true;
const state = new ParkingState({
  ...{ port, group: GROUP, clock: systemClock, logger: quiet },
  ...{ running: () => running, random: Math.random },
});

/** A new owner takes the partition: ms until its parked keys are known, or why not. */
async function load(partition: number): Promise<number | string> {
  const t = Date.now();
  state.take(partition);
  const done = await Promise.race([
    state.ready(partition)!.then(() => true),
    new Promise<false>((r) => setTimeout(() => r(false), 120_000)),
  ]);
  if (!done) return 'not loaded within 120 s';
  const late = state.get(partition, 'late');
  if (late?.head !== 'h-late' || state.get(partition, 'bulk-0')) return 'loaded without the newest records';
  return Date.now() - t;
}

const offsets = await admin.fetchTopicOffsets(topic);
const end = (p: number) => Number(offsets.find((o) => o.partition === p)?.high ?? 0);
const result: Record<string, unknown> = { topic, records: records || undefined };
result[`load_${end(1)}_ms`] = await load(1);
result.rssAfterSmallLoadMiB = Math.round(process.memoryUsage().rss / 2 ** 20);
// One key's 400 parked jobs, spread over the whole partition, as a release reads them.
const spread = state.get(1, `bulk-${sizes[1]!.keys - 1}`);
if (spread) {
  const t = Date.now();
  const back = await state.read(1, spread.followers.slice(0, 500));
  result.releaseRead400SpreadMs = Date.now() - t;
  result.releaseRead400Found = back.length;
}
// Reads of one offset each (a kept partition's check reads what others wrote since; a release
// reads its next jobs): what a read costs beyond its records.
const t = Date.now();
for (let i = 0; i < 100; i++) await port.read(1, [i * 1000 + 7]);
result.oneOffsetReadAvgMs = (Date.now() - t) / 100;
result[`load_${end(0)}_ms`] = await load(0);
result.rssAfterBigLoadMiB = Math.round(process.memoryUsage().rss / 2 ** 20);
running = false;
const m = machine();
const command = [
  'npm run bench:parking',
  ...(process.argv.length > 2 ? ['--', ...process.argv.slice(2)] : []),
];
// Other work on the machine slows every figure here: the load average says how much there was.
const loadAverage = loadavg().map((l) => Math.round(l * 10) / 10);
const evidence = {
  commit: m.commit,
  dirty: m.dirty,
  date: new Date().toISOString(),
  command: command.join(' '),
};
const out = { ...evidence, loadAverage, ...result };
console.log(JSON.stringify(out, null, 2));
writeFileSync(
  join(import.meta.dirname, 'results', `parking-read${values.out ? `-${values.out}` : ''}.json`),
  `${JSON.stringify(out, null, 2)}\n`,
);
await port.close();
await producer.disconnect();
if (!values.keep && !values.topic) await admin.deleteTopics({ topics: [topic] });
await admin.disconnect();
process.exit(0);
