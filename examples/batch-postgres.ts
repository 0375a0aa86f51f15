/**
 * A batch worker that writes payments into PostgreSQL, one multi-row INSERT per batch. Run it with:
 *   npx strand worker examples/batch-postgres.ts
 * PostgreSQL from the usual PG* variables (PGHOST, PGUSER, PGDATABASE, PGPASSWORD, ...); the topic,
 * group and table from PAYMENTS_TOPIC / PAYMENTS_GROUP / PAYMENTS_TABLE (default: payments,
 * payments-ledger, payments_ledger). The table is created on start.
 *
 * Exactly once in the table: the job id is the primary key and the INSERT says ON CONFLICT DO
 * NOTHING, so a batch delivered again (after a crash, a rebalance, a retry) cannot add a row twice.
 * That is the database's guarantee, in the same statement as the write. An idempotency store
 * (`idempotency: { store }`) would only skip handler calls for jobs it saw finish: it cannot cover a
 * crash between the INSERT and its done marker, and the memory store forgets everything on a crash.
 */
import pg from 'pg';
import { type BatchFailure, defineWorker, type Job, NonRetriableError } from 'strand';

interface Payment {
  paymentId: string;
  accountId: string;
  amountCents: number;
  currency: 'EUR' | 'USD' | 'GBP' | 'CHF';
  sequence: number;
  createdAt: number;
  memo: string | null;
}

const table = process.env.PAYMENTS_TABLE ?? 'payments_ledger';
if (!/^[a-z_][a-z0-9_]*$/.test(table)) throw new Error(`PAYMENTS_TABLE: not a plain table name: ${table}`);
const pool = new pg.Pool({ max: 8 });
const ready = pool.query(`CREATE TABLE IF NOT EXISTS ${table} (
  job_id      text PRIMARY KEY,
  account_id  text NOT NULL,
  sequence    integer NOT NULL,
  amount      bigint NOT NULL,
  currency    text NOT NULL,
  inserted_at timestamptz NOT NULL DEFAULT now()
)`);

/** One INSERT for the whole batch; rows already there (a redelivery) are left as they are. */
export async function insertPayments(jobs: readonly Job<Payment>[]): Promise<number> {
  await ready;
  const params: unknown[] = [];
  const rows = jobs.map((job, i) => {
    params.push(job.id, job.data.accountId, job.data.sequence, job.data.amountCents, job.data.currency);
    const p = i * 5;
    return `($${p + 1}, $${p + 2}, $${p + 3}, $${p + 4}, $${p + 5})`;
  });
  const result = await pool.query(
    `INSERT INTO ${table} (job_id, account_id, sequence, amount, currency) VALUES ${rows.join(', ')}
     ON CONFLICT (job_id) DO NOTHING`,
    params,
  );
  return result.rowCount ?? 0;
}

export default defineWorker<Payment>({
  topic: process.env.PAYMENTS_TOPIC ?? 'payments',
  groupId: process.env.PAYMENTS_GROUP ?? 'payments-ledger',
  concurrency: 4, // batches in flight; no two of them share an account (ordering: 'key')
  batch: { maxSize: 500, maxWaitMs: 20 },
  retry: { inPlace: 1, tiers: ['1s', '10s'], maxAttempts: 5 },
  batchHandler: async (jobs, ctx) => {
    // Jobs the database can never take go to the dead-letter topic alone; the rest are written.
    const failed: BatchFailure<Payment>[] = [];
    const valid = jobs.filter((job) => {
      if (job.data.amountCents >= 0) return true;
      failed.push({ job, error: new NonRetriableError(`negative amount on ${job.data.paymentId}`) });
      return false;
    });
    // Throwing (the database is down) fails every job of the batch: retried as usual.
    const inserted = valid.length ? await insertPayments(valid) : 0;
    if (inserted < valid.length)
      ctx.logger.info({ redelivered: valid.length - inserted }, 'rows already present (a redelivery)');
    return { failed };
  },
});
