import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { paymentSchema } from '../chaos/payments.js';
import { SchemaRegistryGateway } from '../src/codec/index.js';
import { encodeWire } from '../src/codec/wire.js';
import { createKafka, Partitioners } from '../src/kafka/client.js';
import { sendAcknowledged } from '../src/kafka/send.js';
import { Outbox } from '../src/outbox/outbox.js';
import { OutboxRelay } from '../src/outbox/relay.js';
import { migrateOutbox, outboxTable } from '../src/outbox/table.js';
import { usePostgres } from '../test/support/postgres-server.js';
import { type BenchStack, benchTopic, type Payment, payment, quiet, round } from './lib.js';
import type { Size } from './scenarios.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Publisher {
  stop(): Promise<void>;
}

/** Strand's relay, in this process. */
async function strandRelay(s: BenchStack, url: string, table: string): Promise<Publisher> {
  const relay = new OutboxRelay({
    databaseUrl: url,
    brokers: s.brokers,
    registry: { url: s.registryUrl },
    table,
    logger: quiet,
  });
  await relay.start();
  return relay;
}

/**
 * The plain loop a team writes first: poll the table every 100 ms (500 rows at a time, oldest id
 * first), produce them (idempotent, acks=all, the same wire format and headers), delete them, and
 * poll again at once while rows keep coming. No NOTIFY, no key locks, no shards.
 */
async function pollLoop(s: BenchStack, url: string, table: string): Promise<Publisher> {
  const t = outboxTable(table);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const kafka = createKafka({ brokers: s.brokers, clientId: 'bench-poll' });
  const producer = kafka.producer({
    createPartitioner: Partitioners.DefaultPartitioner,
    idempotent: true,
    maxInFlightRequests: 5,
    retry: { retries: Number.MAX_SAFE_INTEGER },
  });
  await producer.connect();
  const registry = new SchemaRegistryGateway({ url: s.registryUrl });
  let running = true;
  const loop = (async () => {
    while (running) {
      const { rows } = await client.query<{
        id: string;
        topic: string;
        key: string | null;
        job_id: string;
        schema: string;
        body: Buffer;
      }>(`SELECT id, topic, key, job_id, schema, body FROM ${t.sql} ORDER BY id LIMIT 500`);
      if (rows.length === 0) {
        await sleep(100);
        continue;
      }
      const byTopic = new Map<
        string,
        { key: string | null; value: Buffer; headers: Record<string, string> }[]
      >();
      for (const r of rows) {
        const id = await registry.schemaId(`${r.topic}-value`, JSON.parse(r.schema) as object, {
          autoRegister: true,
        });
        const list = byTopic.get(r.topic) ?? [];
        list.push({ key: r.key, value: encodeWire(id, r.body), headers: { 'strand-job-id': r.job_id } });
        byTopic.set(r.topic, list);
      }
      const counts = new Map<string, number>();
      for (const topic of byTopic.keys()) {
        const admin = kafka.admin();
        await admin.connect();
        const meta = await admin.fetchTopicMetadata({ topics: [topic] });
        counts.set(topic, meta.topics[0]!.partitions.length);
        await admin.disconnect();
      }
      await sendAcknowledged(
        producer,
        [...byTopic].map(([topic, messages]) => ({ topic, messages })),
        { counts: async (topic) => counts.get(topic)! },
      );
      await client.query(`DELETE FROM ${t.sql} WHERE id = ANY($1::bigint[])`, [rows.map((r) => r.id)]);
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      await producer.disconnect();
      registry.close();
      await client.end();
    },
  };
}

/** Reads the topic from the start and notes when each job id is first seen. */
async function watch(s: BenchStack, topic: string) {
  const kafka = createKafka({ brokers: s.brokers, clientId: 'bench-outbox-watch' });
  const consumer = kafka.consumer({ groupId: `bench-outbox-${randomUUID()}`, maxWaitTimeInMs: 5 });
  const seenAt = new Map<string, number>();
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  await consumer.run({
    eachBatch: async ({ batch }) => {
      const now = Date.now();
      for (const m of batch.messages) {
        const id = m.headers?.['strand-job-id']?.toString();
        if (id && !seenAt.has(id)) seenAt.set(id, now);
      }
    },
  });
  return { seenAt, stop: () => consumer.disconnect() };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

/**
 * `rate` business transactions a second (one job each, 300 keys, at most 64 open at once) for
 * `seconds`, each job id from `idOf`: when each committed, and how many a full pipeline skipped.
 */
export async function paceTransactions(
  pool: pg.Pool,
  outbox: Outbox<Payment>,
  rate: number,
  seconds: number,
  idOf: (i: number) => string,
) {
  const committedAt = new Map<string, number>();
  let outstanding = 0;
  let skipped = 0;
  let n = 0;
  let owed = 0;
  const t0 = Date.now();
  const inflight = new Set<Promise<void>>();
  while (Date.now() - t0 < seconds * 1000) {
    const started = Date.now();
    owed += (rate * 20) / 1000;
    for (; owed >= 1; owed--) {
      if (outstanding >= 64) {
        skipped++;
        continue;
      }
      const i = n++;
      const id = idOf(i);
      outstanding++;
      const p = (async () => {
        const c = await pool.connect();
        try {
          await c.query('BEGIN');
          await outbox.enqueue(c, { key: `acct-${i % 300}`, data: payment(i, 300), jobId: id });
          await c.query('COMMIT');
          committedAt.set(id, Date.now());
        } finally {
          c.release();
          outstanding--;
        }
      })();
      inflight.add(p);
      void p.finally(() => inflight.delete(p));
    }
    await sleep(Math.max(0, 20 - (Date.now() - started)));
  }
  await Promise.all(inflight);
  return { committedAt, skipped, t0, writeSeconds: (Date.now() - t0) / 1000 };
}

/**
 * One cell: `rate` transactions a second (one job each, 300 keys) for `seconds`, written by up to
 * 64 transactions at once, while `side` publishes. Commit → the record read by a consumer (so the
 * Kafka acknowledgement plus one fetch, ≤ 5 ms of fetch wait): p50, p99, max; the achieved rate.
 */
async function sustained(s: BenchStack, url: string, side: 'strand' | 'poll', rate: number, seconds: number) {
  const table = `bench_outbox_${side}_${rate}_${Date.now().toString(36)}`;
  const topic = await benchTopic(s, `outbox-${side}`, 6);
  const pool = new pg.Pool({ connectionString: url, max: 16 });
  await migrateOutbox(pool, table);
  const outbox = new Outbox<Payment>({ topic, schema: paymentSchema, table });
  const seen = await watch(s, topic);
  const publisher = side === 'strand' ? await strandRelay(s, url, table) : await pollLoop(s, url, table);
  const { committedAt, skipped, t0, writeSeconds } = await paceTransactions(
    pool,
    outbox,
    rate,
    seconds,
    (i) => `j-${i}`,
  );
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline && [...committedAt.keys()].some((id) => !seen.seenAt.has(id)))
    await sleep(100);
  await publisher.stop();
  await seen.stop();
  await pool.end();
  const lat = [...committedAt]
    .map(([id, at]) => (seen.seenAt.get(id) ?? Number.NaN) - at)
    .filter(Number.isFinite);
  lat.sort((a, b) => a - b);
  const lastSeen = Math.max(...seen.seenAt.values());
  return {
    side,
    targetTxPerSecond: rate,
    achievedTxPerSecond: round(committedAt.size / writeSeconds),
    publishedRowsPerSecond: round(seen.seenAt.size / ((lastSeen - t0) / 1000)),
    committed: committedAt.size,
    published: seen.seenAt.size,
    writerSkippedAt64Open: skipped,
    commitToConsumedMs: {
      p50: percentile(lat, 50),
      p99: percentile(lat, 99),
      max: lat[lat.length - 1] ?? null,
    },
  };
}

/** A backlog of `rows` published from a standing start: rows/s. */
export async function drain(s: BenchStack, url: string, side: 'strand' | 'poll', rows: number) {
  const table = `bench_outbox_drain_${side}_${Date.now().toString(36)}`;
  const topic = await benchTopic(s, `outbox-drain-${side}`, 6);
  const pool = new pg.Pool({ connectionString: url, max: 4 });
  await migrateOutbox(pool, table);
  const outbox = new Outbox<Payment>({ topic, schema: paymentSchema, table });
  for (let i = 0; i < rows; i += 500) {
    const c = await pool.connect();
    await c.query('BEGIN');
    await outbox.enqueueMany(
      c,
      Array.from({ length: Math.min(500, rows - i) }, (_, j) => ({
        key: `acct-${(i + j) % 300}`,
        data: payment(i + j, 300),
      })),
    );
    await c.query('COMMIT');
    c.release();
  }
  const t0 = Date.now();
  const publisher = side === 'strand' ? await strandRelay(s, url, table) : await pollLoop(s, url, table);
  const t = outboxTable(table);
  while (Number((await pool.query(`SELECT count(*) AS n FROM ${t.sql}`)).rows[0].n) > 0) await sleep(50);
  const seconds = (Date.now() - t0) / 1000;
  await publisher.stop();
  await pool.end();
  return { side, rows, rowsPerSecond: round(rows / seconds) };
}

/** `npm run bench -- --only outbox`: Strand's relay against a plain poll-and-produce loop. */
export async function outboxBench(s: BenchStack, size: Size) {
  const server = await usePostgres({ fresh: true });
  if ('missing' in server) throw new Error(`no PostgreSQL: ${server.missing}`);
  try {
    const seconds = size.quick ? 5 : 15;
    const cells = [];
    for (const rate of [1000, 5000])
      for (const side of ['strand', 'poll'] as const)
        cells.push(await sustained(s, server.url, side, rate, seconds));
    const backlog = size.quick ? 5000 : 20_000;
    const drains = [];
    for (const side of ['strand', 'poll'] as const) drains.push(await drain(s, server.url, side, backlog));
    return {
      scenario: 'outbox',
      postgres: 'a throwaway PostgreSQL 15 (initdb, fsync off) on the same 2 cores',
      sustained: cells,
      drain: drains,
      debezium: 'measured separately: npm run bench:debezium (bench/outbox-debezium.ts, docs/benchmarks.md)',
      rounds: 1,
    };
  } finally {
    await server.stop();
  }
}
