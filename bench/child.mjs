/**
 * The measured side of every benchmark, one run per process, started by bench/lib.ts `child()` with
 * plain `node` (no tsx: tsx rewrites every module it loads, dist/ included). Strand comes from
 * dist/ (`npm run build`), the baselines are kafkajs and avsc used directly.
 *
 *   node bench/child.mjs <mode> '<json params>'
 *
 * Modes: `strand` (a Worker with a chosen handler), `kafkajs` (an eachBatch consumer, with or
 * without Avro decoding), `produce` (JobProducer.enqueueMany or a raw kafkajs producer),
 * `paced` (JobProducer at a steady rate, for latency).
 * Protocol: JSON lines on stdout, `{"event":"ready"}` once consuming can start and one
 * `{"event":"result",...}`; a failure prints `{"event":"error","message":...}` and exits 1.
 * Logs go to stderr.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import avsc from 'avsc';
import kafkajs from 'kafkajs';
import { HEADERS, JobProducer, Worker } from '../dist/index.js';
import { createLogger } from '../dist/observability/logger.js';

const { Kafka, logLevel, Partitioners } = kafkajs;
const [mode, json] = process.argv.slice(2);
const p = JSON.parse(json ?? '{}');
const emit = (event, fields = {}) => process.stdout.write(`${JSON.stringify({ event, ...fields })}\n`);
const fail = (message) => {
  emit('error', { message });
  process.exit(1);
};
const schema = JSON.parse(readFileSync(new URL('../schemas/payment.avsc', import.meta.url), 'utf8'));
const quiet = createLogger({ level: 'error' });
const maxRssMiB = () => Math.round(process.resourceUsage().maxRSS / 1024);

/** Same record as bench/lib.ts `payment()`: ~200 bytes of Avro over `keys` accounts. */
function payment(i, keys) {
  return {
    paymentId: `pay-${i.toString().padStart(9, '0')}-settlement-batch-2026-11`,
    accountId: `account-${(i % keys).toString().padStart(6, '0')}`,
    amountCents: 1000 + (i % 977),
    currency: 'EUR',
    sequence: i,
    createdAt: Date.now(),
    memo: 'monthly subscription renewal, card on file, merchant 4417-22, terminal 09, region eu-west, ref. 77A1-BC9F-0042-XY',
  };
}

function percentile(values, q) {
  if (values.length === 0) return null;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.floor((q / 100) * sorted.length))];
}
const pct = (xs) => ({ p50: percentile(xs, 50), p95: percentile(xs, 95), p99: percentile(xs, 99) });

/**
 * Where a latency tail comes from: the 5 seconds of the run (counted from the first enqueue) whose
 * slowest enqueue→start was the longest, with how many jobs of that second started later than 50 ms.
 */
function worstSeconds(enqueued, latencies) {
  const t0 = enqueued.reduce((a, b) => Math.min(a, b), Number.POSITIVE_INFINITY);
  const bySecond = new Map();
  enqueued.forEach((at, i) => {
    const second = Math.floor((at - t0) / 1000);
    const b = bySecond.get(second) ?? { second, jobs: 0, over50: 0, maxMs: 0 };
    b.jobs++;
    if (latencies[i] > 50) b.over50++;
    b.maxMs = Math.max(b.maxMs, latencies[i]);
    bySecond.set(second, b);
  });
  return [...bySecond.values()].sort((a, b) => b.maxMs - a.maxMs).slice(0, 5);
}

/**
 * The process's CPU time (user + system, all its threads: GC helpers, libuv) from the first job to
 * the last, per job: the per-job cost, steadier than the rate on two cores shared with the broker.
 */
function cpuPerJob(cpu, count) {
  if (!cpu) return {};
  return { cpuMicrosPerJob: Math.round(((cpu.user + cpu.system) / count) * 100) / 100 };
}

async function waitFor(check, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) fail(`timed out after ${Math.round(timeoutMs / 1000)} s: ${what()}`);
    await sleep(20);
  }
}

/**
 * The handlers a Strand run can use. Each counts what it saw; `done()` says when the run is over;
 * the clock runs from the first handler call to the last counted one.
 */
function strandHandler(kind, count) {
  const s = { first: 0, last: 0, n: 0, cpu0: undefined, cpu: undefined };
  // Two clock reads per run, not per job: the first call and the count-th.
  const tick = () => {
    if (!s.first) {
      s.first = performance.now();
      s.cpu0 = process.cpuUsage();
    }
    if (++s.n === count) {
      s.last = performance.now();
      s.cpu = process.cpuUsage(s.cpu0);
    }
  };
  const base = { s, done: () => s.n >= count, extra: () => ({}) };
  switch (kind) {
    case 'noop':
      return { ...base, handler: tick };
    case 'noop-batch':
      // A batch handler that does nothing: the clock ticks per job, as for 'noop'.
      return {
        ...base,
        batchHandler: (jobs) => {
          if (!s.first) {
            s.first = performance.now();
            s.cpu0 = process.cpuUsage();
          }
          s.n += jobs.length;
          if (s.n >= count && !s.last) {
            s.last = performance.now();
            s.cpu = process.cpuUsage(s.cpu0);
          }
        },
      };
    case 'sleep5':
      // 0–5 ms of "work" (the Parallel Consumer's published benchmark).
      return {
        ...base,
        handler: async () => {
          if (!s.first) s.first = performance.now();
          await sleep(Math.random() * 5);
          tick();
        },
      };
    case 'latency': {
      const toStart = [];
      const toDone = [];
      const enqueued = [];
      return {
        ...base,
        handler: async (job) => {
          const enq = Number(job.headers[HEADERS.enqueuedAt]);
          enqueued.push(enq);
          toStart.push(Date.now() - enq);
          await sleep(1);
          toDone.push(Date.now() - enq);
          tick();
        },
        extra: () => ({
          enqueueToStartMs: pct(toStart),
          enqueueToCompletedMs: pct(toDone),
          worstSeconds: worstSeconds(enqueued, toStart),
        }),
      };
    }
    case 'tenants': {
      // bench/noisy-tenant.ts: every job counts (the clock runs over all of them); the jobs of the
      // small tenants (memo other than "bulk") say how long after their enqueue they started.
      const small = [];
      const workMs = p.options?.workMs ?? 0;
      let bulkStarted = 0;
      let bulkWhenSmallDone;
      return {
        ...base,
        handler: async (job) => {
          if (!s.first) s.first = performance.now();
          if (job.data.memo === 'bulk') bulkStarted++;
          else {
            small.push(Date.now() - Number(job.headers[HEADERS.enqueuedAt]));
            if (small.length === p.options?.smallJobs) bulkWhenSmallDone = bulkStarted;
          }
          // The work of a job (a downstream call): without it the intake, not the handlers, is the
          // bottleneck, and no scheduler can start a record it has not read yet.
          if (workMs > 0) await sleep(workMs);
          tick();
        },
        extra: () => ({
          smallJobs: small.length,
          smallEnqueueToStartMs: { ...pct(small), max: small.reduce((a, b) => Math.max(a, b), 0) },
          bulkStartedBeforeLastSmall: bulkWhenSmallDone ?? null,
        }),
      };
    }
    case 'retry-due': {
      // Every job fails once; the retried attempt says how late it started after its due time.
      const lateness = [];
      return {
        ...base,
        handler: (job) => {
          if (job.attempt === 1) throw new Error('fail once');
          lateness.push(Date.now() - Number(job.headers[HEADERS.dueAt]));
          tick();
        },
        extra: () => ({ startMinusDueMs: { ...pct(lateness), max: Math.max(...lateness) } }),
      };
    }
    case 'delayed': {
      // Delayed jobs: how late each started after its due time, by the delay in its memo.
      const late = {};
      return {
        ...base,
        handler: (job) => {
          const lateness = Date.now() - Number(job.headers[HEADERS.dueAt]);
          const list = late[job.data.memo] ?? [];
          list.push(lateness);
          late[job.data.memo] = list;
          tick();
        },
        extra: () => ({
          startMinusDueMs: Object.fromEntries(
            Object.entries(late).map(([k, v]) => [
              k,
              { ...pct(v), min: Math.min(...v), max: Math.max(...v) },
            ]),
          ),
        }),
      };
    }
    case 'fail-1pct-keys':
      // 1,000 keys (sequence = i, key = i % 1000): every 100th key fails its 3rd job once. Counted
      // (and clocked): the jobs of the other 99% of keys, so the figure is their throughput.
      return {
        ...base,
        handler: (job) => {
          const key = Number(job.data.accountId.slice('account-'.length));
          if (key % 100 !== 0) return tick();
          if (job.attempt === 1 && Math.floor(job.data.sequence / 1000) === 2) throw new Error('transient');
        },
      };
    case 'fail-10pct':
      // First pass only: one job in ten fails once and goes to the retry tier.
      return {
        ...base,
        handler: (job) => {
          if (job.attempt !== 1) return;
          tick();
          if (job.data.sequence % 10 === 0) throw new Error('transient');
        },
      };
    default:
      fail(`unknown handler ${kind}`);
  }
}

async function strand() {
  // `otel`: an OpenTelemetry SDK registered before the worker exists (bench/tracing.ts).
  const sdk = p.otel ? (await import('./otel-sdk.mjs')).registerNoopSdk() : undefined;
  const h = strandHandler(p.handler ?? 'noop', p.count);
  // A tenant function cannot travel as JSON: `tenantFromMemo` asks for the job's memo as its tenant.
  const { tenantFromMemo, smallJobs: _s, workMs: _w, ...workerOptions } = p.options ?? {};
  const options = {
    brokers: p.brokers,
    registry: { url: p.registryUrl },
    topic: p.topic,
    groupId: p.groupId,
    logger: quiet,
    retry: { tiers: [] },
    ...(h.batchHandler ? { batchHandler: h.batchHandler } : { handler: h.handler }),
    ...(tenantFromMemo ? { tenant: (job) => job.data.memo ?? 'none' } : {}),
    ...workerOptions,
  };
  const worker = new Worker(options);
  await worker.start();
  await waitFor(
    () => worker.ready && worker.assignment().length > 0,
    60_000,
    () => 'no assignment',
  );
  emit('ready');
  await waitFor(h.done, p.timeoutMs ?? 600_000, () => `handled ${h.s.n} of ${p.count}`);
  const seconds = (h.s.last - h.s.first) / 1000;
  emit('result', {
    count: p.count,
    seconds,
    jobsPerSecond: p.count / seconds,
    ...cpuPerJob(h.s.cpu, p.count),
    maxRssMiB: maxRssMiB(),
    ...h.extra(),
    ...(sdk ? { spansExported: await sdk.exported() } : {}),
  });
  await Promise.race([worker.stop(), sleep(30_000)]);
}

function kafka() {
  return new Kafka({ clientId: 'strand-bench', brokers: p.brokers, logLevel: logLevel.ERROR });
}

/**
 * Schema by id from the registry (Confluent API), fetched once per id: `get(id)` answers a known id
 * at once (no await), `load(id)` fetches an unknown one.
 */
function schemaCache(registryUrl) {
  const types = new Map();
  const load = async (id) => {
    let type = types.get(id);
    if (!type) {
      const res = await fetch(`${registryUrl}/schemas/ids/${id}`);
      if (!res.ok) throw new Error(`registry: schema ${id}: HTTP ${res.status}`);
      type = avsc.Type.forSchema(JSON.parse((await res.json()).schema));
      types.set(id, type);
    }
    return type;
  };
  return { get: (id) => types.get(id), load };
}

/**
 * kafkajs eachBatch with autocommit (kafkajs commits after every batch). With `decode`, every
 * record's value is read as Confluent wire format and decoded with avsc. Two loops:
 * - `fast` (the reference: the fastest correct loop a user could write): kafkajs' default fetch
 *   sizes and one partition at a time (its defaults), the schema looked up once per id and every
 *   record decoded without an await (an await only for a schema id not seen yet);
 * - otherwise (`strand-fetch`, the earlier "fair" baseline): held to Strand's fetch settings
 *   (3 partitions at once, 512 KiB per partition, 4 MiB per fetch, 200 ms wait) and an await per
 *   record for its schema.
 */
async function kafkajsConsume() {
  const schemas = schemaCache(p.registryUrl);
  const consumer = p.fast
    ? kafka().consumer({ groupId: p.groupId })
    : // Strand's fetch settings (src/kafka/worker-port.ts), so both read the topic in the same pieces.
      kafka().consumer({
        groupId: p.groupId,
        maxBytesPerPartition: 512 * 1024,
        maxBytes: 4 * 1024 * 1024,
        maxWaitTimeInMs: 200,
      });
  let seen = 0;
  let first = 0;
  let last = 0;
  let sink = 0;
  let cpu0;
  let cpu;
  await consumer.connect();
  await consumer.subscribe({ topic: p.topic, fromBeginning: true });
  let joined = false;
  consumer.on(consumer.events.GROUP_JOIN, () => {
    if (!joined) emit('ready');
    joined = true;
  });
  await consumer.run({
    autoCommit: true,
    ...(p.fast ? {} : { partitionsConsumedConcurrently: 3 }),
    eachBatch: async ({ batch }) => {
      if (!first) {
        first = performance.now();
        cpu0 = process.cpuUsage();
      }
      if (p.decode) {
        for (const m of batch.messages) {
          const v = m.value;
          if (!v || v.length < 5 || v[0] !== 0)
            throw new Error(`offset ${m.offset}: not Confluent wire format`);
          const id = v.readUInt32BE(1);
          const type = p.fast ? (schemas.get(id) ?? (await schemas.load(id))) : await schemas.load(id);
          sink += type.fromBuffer(v.subarray(5)).amountCents;
        }
      }
      seen += batch.messages.length;
      last = performance.now();
      if (seen >= p.count && !cpu) cpu = process.cpuUsage(cpu0);
    },
  });
  await waitFor(
    () => seen >= p.count,
    p.timeoutMs ?? 600_000,
    () => `consumed ${seen} of ${p.count}`,
  );
  const seconds = (last - first) / 1000;
  emit('result', {
    count: p.count,
    seen,
    seconds,
    jobsPerSecond: p.count / seconds,
    ...cpuPerJob(cpu, p.count),
    maxRssMiB: maxRssMiB(),
    ...(p.decode ? { checksum: sink } : {}),
  });
  await Promise.race([consumer.disconnect(), sleep(30_000)]);
}

/** Registers the payment schema under `<topic>-value` and returns its id. */
async function registerSchema() {
  const res = await fetch(`${p.registryUrl}/subjects/${p.topic}-value/versions`, {
    method: 'POST',
    headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' },
    body: JSON.stringify({ schema: JSON.stringify(schema) }),
  });
  if (!res.ok) throw new Error(`registry: register: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()).id;
}

/**
 * `jobs` payments in batches of `batch`, after one warm-up batch: Strand's enqueueMany (validate,
 * encode, wire format, job id and enqueued-at headers, idempotent acks=all) or a raw kafkajs
 * producer doing the same work by hand (avsc encode + wire header + the same headers).
 */
async function produce() {
  const keys = p.keys ?? 1000;
  let send;
  let close;
  if (p.side === 'strand') {
    const producer = new JobProducer({
      brokers: p.brokers,
      registry: { url: p.registryUrl },
      topic: p.topic,
      schema,
      logger: quiet,
    });
    await producer.connect();
    send = async (from, to) => {
      const chunk = [];
      for (let i = from; i < to; i++) {
        const data = payment(i, keys);
        chunk.push({ key: data.accountId, data });
      }
      await producer.enqueueMany(chunk);
    };
    close = () => producer.disconnect();
  } else {
    const type = avsc.Type.forSchema(schema);
    const id = await registerSchema();
    const producer = kafka().producer({
      createPartitioner: Partitioners.DefaultPartitioner,
      idempotent: true,
      maxInFlightRequests: 5,
      retry: { retries: Number.MAX_SAFE_INTEGER, initialRetryTime: 100, maxRetryTime: 5000 },
    });
    await producer.connect();
    send = async (from, to) => {
      const now = String(Date.now());
      const messages = [];
      for (let i = from; i < to; i++) {
        const data = payment(i, keys);
        const body = type.toBuffer(data);
        const value = Buffer.allocUnsafe(5 + body.length);
        value[0] = 0;
        value.writeUInt32BE(id, 1);
        body.copy(value, 5);
        messages.push({
          key: data.accountId,
          value,
          headers: { [HEADERS.jobId]: randomUUID(), [HEADERS.enqueuedAt]: now },
        });
      }
      await producer.send({ topic: p.topic, acks: -1, messages });
    };
    close = () => producer.disconnect();
  }
  const batch = p.batch ?? 1000;
  await send(0, batch); // warm-up, not timed
  const t0 = performance.now();
  for (let i = 0; i < p.jobs; i += batch) await send(batch + i, batch + Math.min(p.jobs, i + batch));
  const seconds = (performance.now() - t0) / 1000;
  emit('result', { jobs: p.jobs, batch, seconds, jobsPerSecond: p.jobs / seconds, maxRssMiB: maxRssMiB() });
  await close();
}

/** JobProducer at `rate` jobs/s for `seconds`: rate/100 jobs every 10 ms, each tick one request. */
async function paced() {
  const producer = new JobProducer({
    brokers: p.brokers,
    registry: { url: p.registryUrl },
    topic: p.topic,
    schema,
    logger: quiet,
  });
  await producer.connect();
  await producer.schemaId();
  emit('ready');
  const total = p.seconds * p.rate;
  const perTick = Math.max(1, Math.round(p.rate / 100));
  const t0 = performance.now();
  let sent = 0;
  while (sent < total) {
    const wait = t0 + (sent / p.rate) * 1000 - performance.now();
    if (wait > 0) await sleep(wait);
    const chunk = [];
    for (let i = 0; i < perTick && sent < total; i++, sent++) {
      const data = payment(sent, p.keys ?? 1000);
      chunk.push({ key: data.accountId, data });
    }
    await producer.enqueueMany(chunk);
  }
  const seconds = (performance.now() - t0) / 1000;
  emit('result', { jobs: total, seconds, achievedRate: total / seconds });
  await producer.disconnect();
}

const modes = { strand, kafkajs: kafkajsConsume, produce, paced };
if (!modes[mode]) fail(`unknown mode ${mode}; expected one of ${Object.keys(modes).join(', ')}`);
try {
  await modes[mode]();
  process.exit(0);
} catch (error) {
  fail(error instanceof Error ? error.message : String(error));
}
