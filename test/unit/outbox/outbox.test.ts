import { describe, expect, it } from 'vitest';
import { loadAvroSchemaFile } from '../../../src/codec/index.js';
import { ConfigError, Outbox, ValidationError } from '../../../src/index.js';
import { keyHash, migrationSql, OUTBOX_SHARDS, outboxTable, shardOf } from '../../../src/outbox/table.js';

const schema = loadAvroSchemaFile('schemas/payment.avsc');
const payment = (accountId: string, sequence: number) => ({
  paymentId: `p-${sequence}`,
  accountId,
  amountCents: 100,
  currency: 'EUR',
  sequence,
  createdAt: 1_700_000_000_000,
  memo: null,
});

/** A client that records the statement and answers with ids 1, 2, … */
function recorder() {
  const calls: { text: string; values: unknown[] }[] = [];
  return {
    calls,
    async query(text: string, values: unknown[] = []) {
      calls.push({ text, values });
      const n = (values[1] as unknown[] | undefined)?.length ?? 0;
      return { rows: Array.from({ length: n }, (_, i) => ({ id: String(i + 1) })) };
    },
  };
}

describe('Outbox (no database: what it sends in the one statement)', () => {
  it('one statement per call: the rows in order, the distinct keys locked in ascending hash order', async () => {
    const outbox = new Outbox({ topic: 'payments', schema });
    const db = recorder();
    const entries = await outbox.enqueueMany(db, [
      { key: 'b', data: payment('b', 1), jobId: 'j1' },
      { key: 'a', data: payment('a', 2), jobId: 'j2', headers: { tenant: 't' } },
      { key: 'b', data: payment('b', 3), jobId: 'j3', delay: 60_000 },
      { key: null, data: payment('x', 4) },
    ]);
    expect(db.calls).toHaveLength(1);
    const [, topics, keys, shards, jobIds, , bodies, headers, runAt, locks] = db.calls[0]!
      .values as unknown[][];
    expect(topics).toEqual(['payments', 'payments', 'payments', 'payments']);
    expect(keys).toEqual(['b', 'a', 'b', null]);
    expect(jobIds!.slice(0, 3)).toEqual(['j1', 'j2', 'j3']);
    expect(typeof jobIds![3]).toBe('string'); // a UUIDv7 was made
    expect(shards![0]).toBe(shardOf('b', 'j1'));
    expect(shards![0]).toBe(shards![2]); // one key, one shard
    expect(headers![1]).toBe('{"tenant":"t"}');
    expect(runAt![0]).toBeNull();
    expect(Number(runAt![2])).toBeGreaterThan(Date.now());
    expect((bodies![0] as Buffer).length).toBeGreaterThan(0);
    expect(locks).toEqual([keyHash('a'), keyHash('b')].sort((x, y) => x - y));
    expect(entries.map((e) => e.outboxId)).toEqual(['1', '2', '3', '4']);
    expect(entries[2]!.dueAt).toBeGreaterThan(Date.now());
    // The locks are taken before any row is formed (an InitPlan in the WHERE clause).
    expect(db.calls[0]!.text).toMatch(/WHERE \(SELECT count\(pg_advisory_xact_lock\(\$1, h\)\)/);
  });

  it('a bad record throws a ValidationError naming the field, and nothing is sent', async () => {
    const outbox = new Outbox({ topic: 'payments', schema });
    const db = recorder();
    const error = await outbox
      .enqueueMany(db, [
        { key: 'a', data: payment('a', 1) },
        { key: 'a', data: { ...payment('a', 2), currency: 'YEN' } },
      ])
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as Error).message).toMatch(/^jobs\[1\]\.data does not match schema .*currency/);
    expect(db.calls).toHaveLength(0);
  });

  it('several topics: each job names one; options and inputs are checked with the path', async () => {
    const outbox = new Outbox({ topics: { payments: schema, refunds: schema } });
    const db = recorder();
    await expect(outbox.enqueue(db, { key: 'a', data: payment('a', 1) })).rejects.toThrow(
      /job\.topic: this outbox has several topics \(payments, refunds\)/,
    );
    await expect(outbox.enqueue(db, { key: 'a', data: payment('a', 1), topic: 'nope' })).rejects.toThrow(
      ConfigError,
    );
    await outbox.enqueue(db, { key: 'a', data: payment('a', 1), topic: 'refunds' });
    expect((db.calls[0]!.values[1] as string[])[0]).toBe('refunds');
    expect(() => new Outbox({ topic: 'payments' } as never)).toThrow(
      /schema: give topic and schema together/,
    );
    expect(() => new Outbox({ topic: 'payments', schema, table: 'x; drop' })).toThrow(/table/);
    await expect(
      new Outbox({ topic: 'payments', schema }).enqueue(db, {
        key: 'a',
        data: payment('a', 1),
        delay: 1,
        runAt: 2,
      }),
    ).rejects.toThrow(/give delay or runAt, not both/);
  });

  it('table names are quoted, shards are stable and in range, migration SQL is idempotent (IF NOT EXISTS)', () => {
    expect(outboxTable('app.outbox').sql).toBe('"app"."outbox"');
    expect(keyHash('acct-42')).toBe(keyHash('acct-42'));
    for (const k of ['a', 'acct-1', 'ü', '']) {
      const s = shardOf(k, 'x');
      expect(s).toBeGreaterThanOrEqual(0);
      expect(s).toBeLessThan(OUTBOX_SHARDS);
    }
    for (const sql of migrationSql(outboxTable('app.outbox')))
      expect(sql).toMatch(/IF NOT EXISTS|CREATE OR REPLACE|COMMENT ON/);
  });
});
