import { existsSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { skipWhenMissing } from '../support/optional.js';
import { needPostgres, testPostgres } from '../support/postgres.js';
import { findPostgresBin, usePostgres } from '../support/postgres-server.js';

const throwawayDirs = () => readdirSync(tmpdir()).filter((n) => n.startsWith('strand-pg-'));

describe('the PostgreSQL test harness', () => {
  it('the shared server answers queries as the global setup says', async ({ skip }) => {
    const info = needPostgres({ skip });
    const db = new pg.Client({ connectionString: info.url });
    await db.connect();
    try {
      const { rows } = await db.query<{ wal_level: string; one: number }>(
        'SELECT current_setting($1) AS wal_level, 1 AS one',
        ['wal_level'],
      );
      expect(rows[0]).toEqual({ wal_level: info.walLevel, one: 1 });
    } finally {
      await db.end();
    }
  });

  it('a throwaway server: logical decoding works, and stop() ends it and deletes its folder', async ({
    skip,
  }) => {
    skipWhenMissing(
      { skip },
      findPostgresBin() ? undefined : 'no initdb/pg_ctl on the PATH or under /usr/lib/postgresql/*/bin',
    );
    const before = new Set(throwawayDirs());
    const started = await usePostgres({ fresh: true, walLevel: 'logical' });
    if ('missing' in started) throw new Error(started.missing);
    expect(started.source).toBe('started');
    expect(started.port).not.toBe(testPostgres()?.port);
    const mine = throwawayDirs().filter((d) => !before.has(d));
    expect(mine).toHaveLength(1);
    const db = new pg.Client({ connectionString: started.url });
    await db.connect();
    try {
      // A slot with the built-in test_decoding plugin sees an insert: what an outbox relay needs.
      await db.query('CREATE TABLE outbox_probe (id int PRIMARY KEY)');
      await db.query("SELECT pg_create_logical_replication_slot('probe', 'test_decoding')");
      await db.query('INSERT INTO outbox_probe VALUES (42)');
      const { rows } = await db.query<{ data: string }>(
        "SELECT data FROM pg_logical_slot_get_changes('probe', NULL, NULL)",
      );
      expect(rows.map((r) => r.data)).toContain('table public.outbox_probe: INSERT: id[integer]:42');
    } finally {
      await db.end();
    }
    await started.stop();
    expect(existsSync(`${tmpdir()}/${mine[0]}`)).toBe(false);
    const again = new pg.Client({ connectionString: started.url, connectionTimeoutMillis: 2000 });
    await expect(again.connect()).rejects.toThrow(/ECONNREFUSED/);
    await again.end().catch(() => undefined);
  });
});
