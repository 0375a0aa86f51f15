/**
 * A writer process of the `outbox` chaos scenario: business transactions on PostgreSQL, each one
 * taking its account's row (the business lock), writing an order and 1–3 payment jobs of that
 * account through the outbox, then committing — or rolling back one in three. Settings come from
 * STRAND_OUTBOX_WRITER (JSON). The committed orders table is the truth the scenario checks Kafka
 * against; a transaction whose COMMIT was cut off by a database restart is in it or not, whichever
 * PostgreSQL says.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { Outbox } from '../src/outbox/outbox.js';
import { type Payment, paymentSchema } from './payments.js';

const s = JSON.parse(process.env.STRAND_OUTBOX_WRITER ?? '{}') as {
  url: string;
  table: string;
  topic: string;
  transactions: number;
  keys: number;
  writer: number;
};
const outbox = new Outbox<Payment>({ topic: s.topic, schema: paymentSchema, table: s.table });
const pool = new pg.Pool({ connectionString: s.url, max: 4, connectionTimeoutMillis: 5000 });
pool.on('error', () => undefined); // a restart cuts idle connections: the next checkout reconnects
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function transaction(i: number): Promise<'commit' | 'rollback'> {
  const key = `acct-${Math.floor(Math.random() * s.keys)}`;
  const rollback = Math.random() < 1 / 3;
  const jobs = 1 + Math.floor(Math.random() * 3);
  const c = await pool.connect();
  // A restart cuts the connection of a transaction in flight: its query fails, the process goes on.
  if (c.listenerCount('error') === 0) c.on('error', () => undefined);
  let broken = false;
  try {
    await c.query('BEGIN');
    const { rows } = await c.query<{ seq: string }>(
      'UPDATE chaos_accounts SET seq = seq + 1 WHERE key = $1 RETURNING seq',
      [key],
    );
    const seq = Number(rows[0]!.seq);
    const order = `w${s.writer}-${i}-${randomUUID().slice(0, 8)}`;
    const ids = Array.from({ length: jobs }, (_, j) => `${order}-${j}`);
    await c.query('INSERT INTO chaos_orders (id, key, job_ids) VALUES ($1, $2, $3)', [order, key, ids]);
    await outbox.enqueueMany(
      c,
      ids.map((id, j) => ({
        key,
        jobId: id,
        data: {
          paymentId: id,
          accountId: key,
          amountCents: 100 * seq + j,
          currency: 'EUR' as const,
          // Commit order per account: the account row is locked to the end of the transaction.
          sequence: seq * 4 + j,
          createdAt: Date.now(),
          memo: null,
        },
      })),
    );
    await c.query(rollback ? 'ROLLBACK' : 'COMMIT');
    return rollback ? 'rollback' : 'commit';
  } catch (error) {
    broken = true;
    throw error;
  } finally {
    c.release(broken);
  }
}

let committed = 0;
let rolledBack = 0;
let failed = 0;
for (let i = 0; i < s.transactions; i++) {
  try {
    if ((await transaction(i)) === 'commit') committed++;
    else rolledBack++;
  } catch {
    failed++; // the database restarted: the transaction is in chaos_orders or not
    await sleep(200);
  }
}
process.stdout.write(`${JSON.stringify({ writer: s.writer, committed, rolledBack, failed })}\n`);
await pool.end();
