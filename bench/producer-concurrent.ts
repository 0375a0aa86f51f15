/**
 * `npm run bench:producer-concurrent`: many callers enqueueing one job each at the same time — a
 * web server's request handlers, or a worker's handlers with `ctx.enqueue` — on one producer.
 * Strand's `JobProducer.enqueue` (from dist/) against the strongest plain loop a user would write:
 * one kafkajs idempotent producer (acks=all), the schema id looked up once, avsc encode plus the
 * Confluent wire header, `producer.send` per job, the same number of callers. Rounds interleave the
 * two. Measured: jobs/s and the per-call latency (p50/p99). Writes bench/results/producer-concurrent.json.
 *
 *   npm run bench:producer-concurrent [-- --jobs 20000 --callers 64 --rounds 3]
 */
import { parseArgs } from 'node:util';
import { Partitioners } from 'kafkajs';
import { type Payment, paymentSchema } from '../chaos/payments.js';
import { parseAvroSchema, SchemaRegistryGateway } from '../src/codec/index.js';
import { createKafka } from '../src/kafka/client.js';
import { writeResult } from './env.js';
import { benchStack, benchTopic, deleteBenchTopics, payment, quiet } from './lib.js';

const { values } = parseArgs({
  options: { jobs: { type: 'string' }, callers: { type: 'string' }, rounds: { type: 'string' } },
});
const jobs = Number(values.jobs ?? 20_000);
const callers = Number(values.callers ?? 64);
const rounds = Number(values.rounds ?? 3);

/** Runs `one(i)` for i < jobs with `callers` at once; jobs/s and latency percentiles. */
async function drive(one: (i: number) => Promise<unknown>) {
  const latencies: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: callers }, async () => {
      while (next < jobs) {
        const i = next++;
        const start = performance.now();
        await one(i);
        latencies.push(performance.now() - start);
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  const at = (q: number) => Math.round(latencies[Math.floor((latencies.length - 1) * q)]! * 10) / 10;
  return { jobsPerSecond: Math.round(jobs / seconds), p50Ms: at(0.5), p99Ms: at(0.99) };
}

const s = await benchStack();
// Strand as a user installs it (dist/); the path held in a variable keeps tsc on src/'s types.
const distIndex = '../dist/index.js';
const { JobProducer } = (await import(distIndex)) as typeof import('../src/index.js');
const type = parseAvroSchema(paymentSchema);
const runs: { strand: object[]; kafkajs: object[] } = { strand: [], kafkajs: [] };
try {
  for (let r = 1; r <= rounds; r++) {
    {
      const topic = await benchTopic(s, 'pconc', 12);
      const p = new JobProducer<Payment>({
        brokers: s.brokers,
        registry: { url: s.registryUrl },
        topic,
        schema: paymentSchema,
        logger: quiet,
      });
      await p.connect();
      await p.enqueue({ key: 'warm', data: payment(0, 1000) });
      const m = await drive((i) => p.enqueue({ key: `acct-${i % 1000}`, data: payment(i, 1000) }));
      await p.disconnect();
      runs.strand.push(m);
      console.error(JSON.stringify({ round: r, side: 'strand', ...m }));
    }
    {
      const topic = await benchTopic(s, 'pconc', 12);
      const registry = new SchemaRegistryGateway({ url: s.registryUrl });
      const id = await registry.schemaId(`${topic}-value`, paymentSchema, { autoRegister: true });
      const producer = createKafka(s.conn).producer({
        idempotent: true,
        maxInFlightRequests: 5,
        createPartitioner: Partitioners.DefaultPartitioner,
      });
      await producer.connect();
      const encode = (data: Payment) => {
        const body = type.toBuffer(data);
        const out = Buffer.allocUnsafe(5 + body.length);
        out[0] = 0;
        out.writeInt32BE(id, 1);
        body.copy(out, 5);
        return out;
      };
      const send = (i: number) =>
        producer.send({
          topic,
          acks: -1,
          messages: [{ key: `acct-${i % 1000}`, value: encode(payment(i, 1000)) }],
        });
      await send(0);
      const m = await drive(send);
      await producer.disconnect();
      runs.kafkajs.push(m);
      console.error(JSON.stringify({ round: r, side: 'kafkajs', ...m }));
    }
  }
  const median = (side: object[], k: string) => {
    const v = side.map((m) => (m as Record<string, number>)[k]!).sort((a, b) => a - b);
    return v[Math.floor(v.length / 2)]!;
  };
  const summary = Object.fromEntries(
    (['strand', 'kafkajs'] as const).map((side) => [
      side,
      Object.fromEntries(['jobsPerSecond', 'p50Ms', 'p99Ms'].map((k) => [k, median(runs[side], k)])),
    ]),
  );
  const result = {
    scenario: 'producer-concurrent',
    jobs,
    callers,
    partitions: 12,
    rounds,
    strand: 'JobProducer.enqueue (dist/), one job per call',
    baseline:
      'kafkajs idempotent producer (acks=all, maxInFlightRequests 5): avsc encode + wire header, producer.send per job',
    medians: summary,
    ratioJobsPerSecond:
      Math.round(
        ((summary.strand as { jobsPerSecond: number }).jobsPerSecond /
          (summary.kafkajs as { jobsPerSecond: number }).jobsPerSecond) *
          100,
      ) / 100,
    runs,
  };
  console.log(JSON.stringify(result));
  console.error(`wrote ${writeResult('producer-concurrent', result)}`);
} finally {
  await deleteBenchTopics(s);
}
process.exit();
