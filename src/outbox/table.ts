import { ConfigError } from '../config/errors.js';

/** The outbox table when none is named. */
export const DEFAULT_OUTBOX_TABLE = 'strand_outbox';

/**
 * Rows are spread over this many shards by key (all rows of one key in one shard). A relay
 * publishes a shard only while it holds the shard's advisory lock, so one relay at a time
 * publishes a given key. Fixed: writers and relays of one table must agree on it.
 */
export const OUTBOX_SHARDS = 32;

/** The NOTIFY channel every outbox table signals on (the payload is the table's name). */
export const OUTBOX_CHANNEL = 'strand_outbox';

const IDENT = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** A table name checked and quoted for SQL: `name` or `schema.name`. */
export interface OutboxTable {
  /** As given (`public.orders_outbox`); the NOTIFY payload and the metrics' `table` label. */
  name: string;
  /** Quoted for SQL (`"public"."orders_outbox"`). */
  sql: string;
  /** The bare table name, for index and function names. */
  base: string;
}

export function outboxTable(name: string = DEFAULT_OUTBOX_TABLE, option = 'table'): OutboxTable {
  const parts = name.split('.');
  if (parts.length > 2 || parts.some((p) => !IDENT.test(p)))
    throw new ConfigError(
      option,
      `expected a table name like "strand_outbox" or "app.outbox", got "${name}"`,
    );
  return { name, sql: parts.map((p) => `"${p}"`).join('.'), base: parts[parts.length - 1]! };
}

/**
 * 32-bit FNV-1a of a string: the lock key of a job key (writers) and its shard. Computed in
 * JavaScript so writers need no SQL function of ours, and stable across processes and versions.
 */
export function keyHash(s: string): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(s, 'utf8')) {
    h ^= byte;
    h = Math.imul(h, 0x01000193);
  }
  return h | 0;
}

export function shardOf(key: string | null, jobId: string): number {
  return Math.abs(keyHash(key ?? jobId) % OUTBOX_SHARDS);
}

/**
 * The two advisory-lock spaces of a table (the two-`int4` form of `pg_advisory_*lock`): writers
 * lock `(writers, keyHash(key))` for the rest of their transaction; relays lock
 * `(relays, shard)` for the life of their session.
 */
export function lockSpaces(t: OutboxTable): { writers: number; relays: number; migrate: number } {
  return {
    writers: keyHash(`strand-outbox-writers:${t.name}`),
    relays: keyHash(`strand-outbox-relays:${t.name}`),
    migrate: keyHash(`strand-outbox-migrate:${t.name}`),
  };
}

/** The statements `strand outbox migrate` runs (each idempotent). */
export function migrationSql(t: OutboxTable): string[] {
  const fn = t.name.includes('.') ? `${t.sql.split('.')[0]}."${t.base}_notify"` : `"${t.base}_notify"`;
  return [
    `CREATE TABLE IF NOT EXISTS ${t.sql} (
      id bigserial PRIMARY KEY,
      topic text NOT NULL,
      key text,
      shard smallint NOT NULL,
      job_id text NOT NULL,
      schema text NOT NULL,
      body bytea NOT NULL,
      headers jsonb NOT NULL DEFAULT '{}'::jsonb,
      run_at bigint,
      enqueued_at timestamptz NOT NULL DEFAULT clock_timestamp()
    )`,
    `COMMENT ON TABLE ${t.sql} IS 'Strand transactional outbox: jobs written in business transactions, published to Kafka by "strand outbox relay" (rows are deleted once Kafka acknowledged them)'`,
    `CREATE INDEX IF NOT EXISTS "${t.base}_enqueued_at" ON ${t.sql} (enqueued_at)`,
    `CREATE OR REPLACE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_notify('${OUTBOX_CHANNEL}', '${t.name}'); RETURN NULL; END $$`,
    // Created once (no DROP and CREATE: that would lock the table against writers at every migrate).
    `DO $$ BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = '${t.base}_notify' AND tgrelid = '${t.sql}'::regclass) THEN
        CREATE TRIGGER "${t.base}_notify" AFTER INSERT ON ${t.sql} FOR EACH STATEMENT EXECUTE FUNCTION ${fn}();
      END IF; END $$`,
  ];
}

/** The least a `pg` client, pool client or pool offers: a parameterised query. */
export interface Queryable {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[]; rowCount?: number | null }>;
}

/**
 * Creates the outbox table, its indexes and its NOTIFY trigger; running it again changes nothing.
 * Runs in one transaction on a client of its own choosing (a `pg.Client` or pool client).
 */
export async function migrateOutbox(client: Queryable, table?: string): Promise<OutboxTable> {
  const t = outboxTable(table);
  await client.query('BEGIN');
  try {
    // Two migrations at once (two replicas starting) must not race on CREATE ... IF NOT EXISTS.
    await client.query('SELECT pg_advisory_xact_lock($1, 0)', [lockSpaces(t).migrate]);
    for (const sql of migrationSql(t)) await client.query(sql);
    await client.query('COMMIT');
  } catch (error) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw error;
  }
  return t;
}
