import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AvroCodec, loadAvroSchemaFile, SchemaRegistryGateway } from '../../src/codec/index.js';
import {
  HEADERS,
  migrateOutbox,
  OUTBOX_ID_HEADER,
  Outbox,
  OutboxRelay,
  ValidationError,
} from '../../src/index.js';
import { lockSpaces, OUTBOX_SHARDS, outboxTable } from '../../src/outbox/table.js';
import { runCli, runNode } from '../support/cli.js';
import { jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { needPostgres, type PostgresInfo } from '../support/postgres.js';
import { type RawRecord, rawConsume } from '../support/raw-kafka.js';

const paymentSchema = loadAvroSchemaFile('schemas/payment.avsc');
type Payment = {
  paymentId: string;
  accountId: string;
  amountCents: number;
  currency: 'EUR';
  sequence: number;
  createdAt: number;
  memo: string | null;
};
const payment = (account: string, sequence: number, memo: string | null = null): Payment => ({
  paymentId: `${account}-${sequence}`,
  accountId: account,
  amountCents: 100 + sequence,
  currency: 'EUR',
  sequence,
  createdAt: 1_700_000_000_000 + sequence,
  memo,
});

/** Tables this file made, dropped after it (the shared server outlives the run). */
const madeTables = new Set<string>();
const tableName = (prefix: string) => {
  const name = uniqueName(prefix).replace(/-/g, '_');
  madeTables.add(name);
  return name;
};

function relayOf(
  info: PostgresInfo,
  topicTable: string,
  extra: Partial<ConstructorParameters<typeof OutboxRelay>[0]> = {},
) {
  return new OutboxRelay({
    databaseUrl: info.url,
    brokers: stack().brokers,
    registry: { url: stack().registryUrl },
    table: topicTable,
    pollIntervalMs: 200,
    takeoverIntervalMs: 300,
    statsIntervalMs: 200,
    ...extra,
  });
}

async function inTx<T>(
  pool: pg.Pool,
  fn: (c: pg.PoolClient) => Promise<T>,
  end: 'COMMIT' | 'ROLLBACK' = 'COMMIT',
) {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    const out = await fn(c);
    await c.query(end);
    return out;
  } catch (error) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw error;
  } finally {
    c.release();
  }
}

/** The sequences of each key in the order Kafka holds them (first occurrence of each job id). */
function orderByKey(records: RawRecord[]): Map<string, number[]> {
  const seen = new Set<string>();
  const out = new Map<string, number[]>();
  for (const r of [...records].sort((a, b) => a.offset - b.offset)) {
    const id = r.headers[HEADERS.jobId]!;
    if (seen.has(id)) continue;
    seen.add(id);
    const seq = Number(id.slice(id.lastIndexOf('-') + 1));
    out.set(r.key!, [...(out.get(r.key!) ?? []), seq]);
  }
  return out;
}

async function rowCount(pool: pg.Pool, table: string): Promise<number> {
  const { rows } = await pool.query(`SELECT count(*)::int AS n FROM ${outboxTable(table).sql}`);
  return rows[0].n as number;
}

describe('transactional outbox (PostgreSQL → Kafka)', () => {
  let pool: pg.Pool | undefined;
  let topic: string;
  let cleanup: () => Promise<void>;
  const relays: OutboxRelay[] = [];
  const start = async (r: OutboxRelay) => {
    relays.push(r);
    await r.start();
    return r;
  };
  const db = (skip: (note?: string) => never) => {
    const info = needPostgres({ skip });
    pool ??= new pg.Pool({ connectionString: info.url, max: 12 });
    return { info, pool };
  };

  beforeAll(async () => {
    ({ topic, cleanup } = await jobTopic('outbox', { partitions: 4 }));
  });
  afterAll(async () => {
    await Promise.all(relays.map((r) => r.stop()));
    for (const t of madeTables)
      await pool
        ?.query(`DROP TABLE IF EXISTS ${t}; DROP FUNCTION IF EXISTS ${t}_notify()`)
        .catch(() => undefined);
    await pool?.end();
    await cleanup();
  });

  it('migrate creates the table, indexes and trigger, and running it again changes nothing (library and CLI)', async ({
    skip,
  }) => {
    const { info, pool } = db(skip);
    const table = tableName('ob_migrate');
    const c = await pool.connect();
    try {
      await migrateOutbox(c, table);
      await migrateOutbox(c, table);
    } finally {
      c.release();
    }
    const cliTable = tableName('ob_cli');
    for (let i = 0; i < 2; i++) {
      const r = await runCli(['outbox', 'migrate', '--database-url', info.url, '--table', cliTable]);
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`outbox table ${cliTable} is ready`);
    }
    for (const t of [table, cliTable]) {
      const { rows } = await pool.query(
        `SELECT (SELECT count(*)::int FROM pg_indexes WHERE tablename = $1) AS indexes,
                (SELECT count(*)::int FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal) AS triggers`,
        [t],
      );
      expect(rows[0]).toEqual({ indexes: 2, triggers: 1 }); // the primary key, enqueued_at
    }
    const bad = await runCli(['outbox', 'migrate', '--database-url', info.url, '--table', 'no-such;table']);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('a committed transaction publishes its jobs (wire format, job id, outbox id); a rolled-back one none; a bad record throws inside the transaction', async ({
    skip,
  }) => {
    const { info, pool } = db(skip);
    const table = tableName('ob_basic');
    await migrateOutbox(pool, table);
    const outbox = new Outbox<Payment>({ topic, schema: paymentSchema, table });
    await inTx(
      pool,
      async (c) => {
        await outbox.enqueue(c, { key: 'acct-rolled', data: payment('acct-rolled', 1) });
      },
      'ROLLBACK',
    );
    const entries = await inTx(pool, async (c) => {
      // The caller's transaction goes on after a bad record: nothing was written for it.
      const bad = await outbox
        .enqueue(c, { key: 'acct-1', data: { ...payment('acct-1', 0), amountCents: 'ten' as never } })
        .catch((e: unknown) => e);
      expect(bad).toBeInstanceOf(ValidationError);
      expect((bad as Error).message).toMatch(/amountCents: expected long/);
      return outbox.enqueueMany(c, [
        { key: 'acct-1', data: payment('acct-1', 1), jobId: 'job-acct-1-1', headers: { tenant: 't1' } },
        { key: 'acct-1', data: payment('acct-1', 2), jobId: 'job-acct-1-2' },
      ]);
    });
    expect(await rowCount(pool, table)).toBe(2);
    const relay = await start(relayOf(info, table));
    await waitUntil(async () => (await rowCount(pool, table)) === 0, {
      what: 'the relay to remove the rows',
    });
    const records = await rawConsume(stack().brokers, topic, 10, { timeoutMs: 15_000 });
    const mine = records.filter((r) => r.key === 'acct-1');
    expect(mine.map((r) => r.headers[HEADERS.jobId])).toEqual(['job-acct-1-1', 'job-acct-1-2']);
    expect(mine.map((r) => r.headers[OUTBOX_ID_HEADER])).toEqual(entries.map((e) => e.outboxId));
    expect(mine[0]!.headers.tenant).toBe('t1');
    expect(records.some((r) => r.key === 'acct-rolled')).toBe(false);
    const codec = new AvroCodec(new SchemaRegistryGateway({ url: stack().registryUrl }));
    expect((await codec.decode(mine[1]!.value)).data).toEqual(payment('acct-1', 2));
    expect(relay.counts.published).toBe(2);
    expect(relay.shards).toBe(OUTBOX_SHARDS);
    await relay.stop();
  });

  it('two concurrent transactions on one key: the second waits for the first, and Kafka holds them in commit order', async ({
    skip,
  }) => {
    const { info, pool } = db(skip);
    const table = tableName('ob_order');
    await migrateOutbox(pool, table);
    const outbox = new Outbox<Payment>({ topic, schema: paymentSchema, table });
    const key = `acct-${uniqueName('k')}`;
    // The classic gap: T1 draws id n, T2 draws n+1 and commits first. Here T2's enqueue waits for
    // T1's key lock, so it cannot commit before T1 ends.
    const t1 = await pool.connect();
    const t2 = await pool.connect();
    try {
      await t1.query('BEGIN');
      await t2.query('BEGIN');
      await outbox.enqueue(t1, { key, data: payment(key, 1), jobId: `${key}-1` });
      let t2Enqueued = false;
      const t2Done = outbox.enqueue(t2, { key, data: payment(key, 2), jobId: `${key}-2` }).then(() => {
        t2Enqueued = true;
      });
      await new Promise((r) => setTimeout(r, 500));
      expect(t2Enqueued).toBe(false);
      await t1.query('COMMIT');
      await t2Done;
      await t2.query('COMMIT');
    } finally {
      t1.release();
      t2.release();
    }
    // Many writers at once on three keys, each holding its transaction open a while: Kafka's order
    // per key is the order in which the transactions got the key (and so committed).
    const keys = [0, 1, 2].map((i) => `${key}-m${i}`);
    const lockedOrder = new Map<string, number[]>(keys.map((k) => [k, []]));
    await Promise.all(
      Array.from({ length: 24 }, (_, i) =>
        inTx(pool, async (c) => {
          const k = keys[i % 3]!;
          await new Promise((r) => setTimeout(r, Math.random() * 50));
          await outbox.enqueue(c, { key: k, data: payment(k, i), jobId: `${k}-${i}` });
          lockedOrder.get(k)!.push(i);
          await new Promise((r) => setTimeout(r, Math.random() * 30));
        }),
      ),
    );
    const relay = await start(relayOf(info, table));
    await waitUntil(async () => (await rowCount(pool, table)) === 0, { what: 'rows published' });
    const records = (await rawConsume(stack().brokers, topic, 1000, { timeoutMs: 15_000 })).filter((r) =>
      r.key?.startsWith(key),
    );
    const order = orderByKey(records);
    expect(order.get(key)).toEqual([1, 2]);
    for (const k of keys) expect(order.get(k)).toEqual(lockedOrder.get(k));
    await relay.stop();
  });

  it('two relays: one publishes, the standby takes over within seconds when it stops, and key order holds across', async ({
    skip,
  }) => {
    const { info, pool } = db(skip);
    const table = tableName('ob_failover');
    await migrateOutbox(pool, table);
    const outbox = new Outbox<Payment>({ topic, schema: paymentSchema, table });
    const prefix = uniqueName('fo');
    const a = await start(relayOf(info, table));
    await waitUntil(() => a.shards === OUTBOX_SHARDS, { what: 'relay A to take every shard' });
    const b = await start(relayOf(info, table));
    let stopWriting = false;
    let written = 0;
    const writer = (async () => {
      for (let i = 0; !stopWriting; i++) {
        await inTx(pool, (c) =>
          outbox.enqueueMany(
            c,
            [0, 1, 2, 3].map((k) => ({
              key: `${prefix}-${k}`,
              data: payment(`${prefix}-${k}`, i),
              jobId: `${prefix}-${k}-${i}`,
            })),
          ),
        );
        written = i + 1;
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    await waitUntil(() => a.counts.published > 40, { what: 'A publishing' });
    expect(b.shards).toBe(0);
    const stoppedAt = Date.now();
    await a.stop();
    await waitUntil(() => b.shards === OUTBOX_SHARDS, { timeoutMs: 10_000, what: 'B to take over' });
    const takeoverMs = Date.now() - stoppedAt;
    expect(takeoverMs).toBeLessThan(5000);
    // A relay whose session dies (its backend terminated) loses its shards and gets them back.
    const { rows: killed } = await pool.query(
      'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1',
      [`strand-outbox-relay ${table}`],
    );
    expect(killed).toHaveLength(1);
    await waitUntil(() => b.counts.sessions >= 2 && b.shards === OUTBOX_SHARDS, {
      timeoutMs: 20_000,
      what: 'B back',
    });
    const before = b.counts.published;
    await waitUntil(() => b.counts.published > before + 20, { what: 'B publishing' });
    stopWriting = true;
    await writer;
    await waitUntil(async () => (await rowCount(pool, table)) === 0, { what: 'all published' });
    const records = (await rawConsume(stack().brokers, topic, 100_000, { timeoutMs: 20_000 })).filter((r) =>
      r.key?.startsWith(prefix),
    );
    const order = orderByKey(records);
    for (let k = 0; k < 4; k++)
      expect(order.get(`${prefix}-${k}`)).toEqual(Array.from({ length: written }, (_, i) => i));
    await b.stop();
  });

  it('a standby reports the pending rows and their age; once it holds the shards it publishes them', async ({
    skip,
  }) => {
    const { info, pool } = db(skip);
    const table = tableName('ob_metrics');
    await migrateOutbox(pool, table);
    const outbox = new Outbox<Payment>({ topic, schema: paymentSchema, table });
    const holder = await pool.connect();
    try {
      // The test's own session holds every shard: the relay is a standby.
      await holder.query('SELECT pg_advisory_lock($1, s) FROM generate_series(0, $2 - 1) AS s', [
        lockSpaces(outboxTable(table)).relays,
        OUTBOX_SHARDS,
      ]);
      await inTx(pool, (c) =>
        outbox.enqueueMany(
          c,
          [1, 2, 3].map((i) => ({ key: `m-${i}`, data: payment(`m-${i}`, i) })),
        ),
      );
      const relay = await start(relayOf(info, table, { metrics: { port: 0, host: '127.0.0.1' } }));
      const scrape = async () => (await fetch(`http://127.0.0.1:${relay.metricsPort}/metrics`)).text();
      const line = (text: string, name: string) =>
        text.split('\n').find((l) => l.startsWith(`${name}{table="${table}",topic="${topic}"}`));
      const text = await waitUntil(
        async () => {
          const t = await scrape();
          return line(t, 'queue_outbox_pending')?.endsWith(' 3') ? t : undefined;
        },
        { what: 'pending 3' },
      );
      expect(Number(line(text, 'queue_outbox_oldest_age_seconds')!.split(' ')[1])).toBeGreaterThan(0);
      expect(text).toContain(`queue_outbox_relay_shards{table="${table}"} 0`);
      expect(relay.counts.published).toBe(0);
      await holder.query('SELECT pg_advisory_unlock_all()');
      await waitUntil(async () => line(await scrape(), 'queue_outbox_published_total')?.endsWith(' 3'), {
        what: 'published 3',
      });
      // Once nothing waits the topic's gauges read 0 (a dashboard shows 0, not "no data").
      await waitUntil(async () => line(await scrape(), 'queue_outbox_pending')?.endsWith(' 0'), {
        what: 'pending 0',
      });
      expect(line(await scrape(), 'queue_outbox_oldest_age_seconds')).toMatch(/ 0$/);
    } finally {
      holder.release();
    }
  });

  it('a row whose schema the registry rejects goes to the DLQ with the reason; the rows after it are published', async ({
    skip,
  }) => {
    const { info, pool } = db(skip);
    const table = tableName('ob_dlq');
    await migrateOutbox(pool, table);
    const { topic: t, cleanup: drop } = await jobTopic('outbox-dlq', { partitions: 2 });
    try {
      // The subject holds the payment schema (BACKWARD); a version with a new field without a
      // default cannot read the old records, so the registry rejects it.
      const gateway = new SchemaRegistryGateway({ url: stack().registryUrl });
      await gateway.schemaId(`${t}-value`, paymentSchema, { autoRegister: true, compatibility: 'BACKWARD' });
      gateway.close();
      const v2 = {
        ...paymentSchema,
        fields: [...(paymentSchema as { fields: object[] }).fields, { name: 'region', type: 'string' }],
      };
      const bad = new Outbox({ topic: t, schema: v2, table });
      const good = new Outbox<Payment>({ topic: t, schema: paymentSchema, table });
      await inTx(pool, async (c) => {
        await bad.enqueue(c, { key: 'k', data: { ...payment('k', 1), region: 'eu' }, jobId: 'k-1' });
        await good.enqueue(c, { key: 'k', data: payment('k', 2), jobId: 'k-2' });
      });
      const relay = await start(relayOf(info, table));
      await waitUntil(async () => (await rowCount(pool, table)) === 0, { what: 'both rows handled' });
      const dead = await rawConsume(stack().brokers, `${t}.dlq`, 1, { timeoutMs: 15_000 });
      expect(dead).toHaveLength(1);
      expect(dead[0]!.headers[HEADERS.jobId]).toBe('k-1');
      expect(dead[0]!.headers[HEADERS.deadReason]).toBe('outbox-rejected');
      expect(dead[0]!.headers[HEADERS.errorMessage]).toMatch(/compatib|reject/i);
      const published = await rawConsume(stack().brokers, t, 2, { timeoutMs: 15_000 });
      expect(published.map((r) => r.headers[HEADERS.jobId])).toEqual(['k-2']);
      expect(relay.counts.deadLettered).toBe(1);
    } finally {
      await drop();
    }
  });

  it('a commit wakes the relay at once (LISTEN/NOTIFY, polling once a minute); a delayed job goes to its delay bucket with its due time', async ({
    skip,
  }) => {
    const { info, pool } = db(skip);
    const table = tableName('ob_notify');
    await migrateOutbox(pool, table);
    const { topic: t, cleanup: drop } = await jobTopic('outbox-delay', {
      partitions: 2,
      delayBucketsMs: [1000, 60_000],
    });
    try {
      const relay = await start(relayOf(info, table, { pollIntervalMs: 60_000 }));
      await waitUntil(() => relay.shards === OUTBOX_SHARDS, { what: 'the relay holding the shards' });
      await new Promise((r) => setTimeout(r, 500)); // past its first look at the (empty) table
      const outbox = new Outbox<Payment>({ topic: t, schema: paymentSchema, table });
      const committedAt = Date.now();
      const [now, later] = await inTx(pool, (c) =>
        outbox.enqueueMany(c, [
          { key: 'n', data: payment('n', 1), jobId: 'n-1' },
          { key: 'd', data: payment('d', 1), jobId: 'd-1', delay: '30s' },
        ]),
      );
      await waitUntil(() => relay.counts.published === 2, { timeoutMs: 10_000, what: 'both published' });
      expect(Date.now() - committedAt).toBeLessThan(5000); // not the minute's poll
      expect(now!.dueAt).toBeUndefined();
      const direct = await rawConsume(stack().brokers, t, 1, { timeoutMs: 15_000 });
      expect(direct.map((r) => r.headers[HEADERS.jobId])).toEqual(['n-1']);
      const delayed = await rawConsume(stack().brokers, `${t}.delay.1s`, 1, { timeoutMs: 15_000 });
      expect(delayed.map((r) => r.headers[HEADERS.jobId])).toEqual(['d-1']);
      expect(Number(delayed[0]!.headers[HEADERS.dueAt])).toBe(later!.dueAt);
    } finally {
      await drop();
    }
  });

  it('strand outbox relay with a database that does not answer: one clear line, and it keeps retrying', async () => {
    const r = await runNode(
      ['dist/cli/main.js', 'outbox', 'relay', '--database-url', 'postgres://postgres@127.0.0.1:1/shop'],
      {
        env: {
          ...process.env,
          STRAND_BROKERS: stack().brokers.join(','),
          STRAND_REGISTRY_URL: stack().registryUrl,
        },
        timeoutMs: 6000,
      },
    );
    expect(r.ended).toBe(false); // still running when killed
    const faults = r.stderr.split('\n').filter((l) => l.includes('cannot reach PostgreSQL'));
    expect(faults).toHaveLength(1);
    expect(JSON.parse(faults[0]!).msg).toMatch(
      /^outbox relay \(strand_outbox\): cannot reach PostgreSQL at 127\.0\.0\.1:1\/shop \(ECONNREFUSED\); check --database-url; retrying in \d/,
    );
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack
  });

  it('strand lag --database-url shows the outbox next to the topic lag', async ({ skip }) => {
    const { info, pool } = db(skip);
    await migrateOutbox(pool); // the default table
    madeTables.add('strand_outbox');
    const outbox = new Outbox<Payment>({ topic, schema: paymentSchema });
    const holder = await pool.connect();
    try {
      // No relay publishes (the shards are held), so the rows wait.
      await holder.query('SELECT pg_advisory_lock($1, s) FROM generate_series(0, $2 - 1) AS s', [
        lockSpaces(outboxTable()).relays,
        OUTBOX_SHARDS,
      ]);
      await inTx(pool, (c) =>
        outbox.enqueueMany(
          c,
          [1, 2].map((i) => ({ key: `lag-${i}`, data: payment('lag', i) })),
        ),
      );
      const text = await runCli([
        'lag',
        '--group',
        uniqueName('g'),
        '--topic',
        topic,
        '--database-url',
        info.url,
      ]);
      expect(text.code).toBe(0);
      expect(text.stdout).toMatch(
        new RegExp(`outbox strand_outbox → ${topic}: 2 job\\(s\\) committed, not yet in Kafka, oldest \\d`),
      );
      const json = await runCli([
        'lag',
        '--group',
        uniqueName('g'),
        '--topic',
        topic,
        '--database-url',
        info.url,
        '--json',
      ]);
      expect(JSON.parse(json.stdout).outbox).toEqual([
        { topic, pending: 2, oldestAgeSeconds: expect.any(Number) },
      ]);
    } finally {
      await pool.query(`DELETE FROM strand_outbox WHERE topic = $1`, [topic]);
      await holder.query('SELECT pg_advisory_unlock_all()');
      holder.release();
    }
  });
});
