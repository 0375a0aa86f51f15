/**
 * Producer throughput: JobProducer.enqueueMany (validate + Avro encode + wire format + idempotent
 * acks=all) against a raw kafkajs producer sending the same pre-encoded bytes, in the same run.
 * Usage: node --import tsx bench/producer.ts [--jobs N] [--quick]
 */
import { parseArgs } from 'node:util';
import { loadAvroSchemaFile, parseAvroSchema } from '../src/codec/index.js';
import { stackUp } from '../src/devstack/index.js';
import { createKafka } from '../src/kafka/client.js';
import { createTopicsReady } from '../src/kafka/topics.js';
import { JobProducer } from '../src/producer/job-producer.js';
import { writeResult } from './env.js';

const { values } = parseArgs({
  options: {
    jobs: { type: 'string' },
    quick: { type: 'boolean' },
    batch: { type: 'string' },
    rounds: { type: 'string' },
  },
});
const jobs = Number(values.jobs ?? (values.quick ? 20_000 : 200_000));
const batch = Number(values.batch ?? 1000);
const { info } = await stackUp({ onProgress: (l) => console.error(`[devstack] ${l}`) });
const brokers = process.env.STRAND_BROKERS?.split(',') ?? info.brokers;
const registryUrl = process.env.STRAND_REGISTRY_URL ?? info.registryUrl;
const schema = loadAvroSchemaFile('schemas/payment.avsc');
const type = parseAvroSchema(schema);
const kafka = createKafka({ brokers, clientId: 'strand-bench' });
const admin = kafka.admin();
await admin.connect();
const stamp = Date.now();
const topics = { strand: `bench-produce-strand-${stamp}`, raw: `bench-produce-raw-${stamp}` };
await createTopicsReady(
  admin,
  Object.values(topics).map((topic) => ({ topic, numPartitions: 12 })),
);

const data = (i: number) => ({
  paymentId: `pay-${i}`,
  accountId: `acct-${i % 500}`,
  amountCents: 1000 + (i % 977),
  currency: 'EUR',
  sequence: i,
  createdAt: stamp + i,
  memo: i % 3 === 0 ? 'monthly subscription renewal' : null,
});

async function runStrand(): Promise<number> {
  const producer = new JobProducer({ brokers, registry: { url: registryUrl }, topic: topics.strand, schema });
  await producer.connect();
  await producer.enqueue({ key: 'warm', data: data(0) });
  const t0 = performance.now();
  for (let i = 0; i < jobs; i += batch) {
    const chunk = [];
    for (let j = i; j < Math.min(jobs, i + batch); j++) chunk.push({ key: `acct-${j % 500}`, data: data(j) });
    await producer.enqueueMany(chunk);
  }
  const seconds = (performance.now() - t0) / 1000;
  await producer.disconnect();
  return jobs / seconds;
}

async function runRaw(): Promise<number> {
  const header = Buffer.from([0, 0, 0, 0, 1]);
  const encoded = Array.from({ length: Math.min(jobs, 10_000) }, (_, i) =>
    Buffer.concat([header, type.toBuffer(data(i))]),
  );
  const producer = kafka.producer({
    idempotent: true,
    maxInFlightRequests: 5,
    retry: { retries: Number.MAX_SAFE_INTEGER },
  });
  await producer.connect();
  const t0 = performance.now();
  for (let i = 0; i < jobs; i += batch) {
    const messages = [];
    for (let j = i; j < Math.min(jobs, i + batch); j++) {
      messages.push({
        key: `acct-${j % 500}`,
        value: encoded[j % encoded.length]!,
        headers: { 'strand-job-id': `j${j}` },
      });
    }
    await producer.send({ topic: topics.raw, acks: -1, messages });
  }
  const seconds = (performance.now() - t0) / 1000;
  await producer.disconnect();
  return jobs / seconds;
}

// Alternate the two sides over several rounds (after a warm-up of each) and compare medians, so
// JIT warm-up and the broker's own noise on a 2-core machine do not decide the ratio.
const rounds = Number(values.rounds ?? 3);
await runRaw();
await runStrand();
const rawRuns: number[] = [];
const strandRuns: number[] = [];
for (let r = 0; r < rounds; r++) {
  rawRuns.push(await runRaw());
  strandRuns.push(await runStrand());
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const raw = median(rawRuns);
const strand = median(strandRuns);
await admin.deleteTopics({ topics: Object.values(topics) }).catch(() => undefined);
await admin.disconnect();
const result = {
  scenario: 'producer',
  jobs,
  batch,
  strandJobsPerSecond: Math.round(strand),
  rawKafkajsJobsPerSecond: Math.round(raw),
  ratio: Number((strand / raw).toFixed(3)),
  runs: { strand: strandRuns.map(Math.round), raw: rawRuns.map(Math.round) },
  target: 'ratio >= 0.8',
};
const file = writeResult('producer', result);
console.log(JSON.stringify(result));
console.log(`wrote ${file}`);
