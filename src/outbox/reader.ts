import { loadPg } from './driver.js';
import { describeFault, type OutboxBacklog, outboxBacklog } from './pg.js';
import { lockSpaces, OUTBOX_SHARDS, outboxTable, type Queryable } from './table.js';

/** One key shard of an outbox table: its rows waiting and the relay session publishing it. */
export interface OutboxShard {
  shard: number;
  pending: number;
  oldestAgeSeconds: number;
  /** The relay session holding the shard's lock (none: no relay publishes the shard now). */
  relay: OutboxRelaySession | undefined;
}

/** A relay session as PostgreSQL sees it (pg_stat_activity). */
export interface OutboxRelaySession {
  pid: number;
  application: string;
  client: string;
  /** When the session connected (epoch ms). */
  since: number;
  shards: number;
}

/** An outbox table at one moment: per topic, per shard, per relay, and the rows removed so far. */
export interface OutboxState {
  table: string;
  at: number;
  topics: OutboxBacklog[];
  shards: OutboxShard[];
  relays: OutboxRelaySession[];
  /**
   * Rows removed from the table since the statistics were last reset (pg_stat_user_tables
   * n_tup_del): the relay deletes a row once Kafka acknowledged it (published or dead-lettered),
   * so the difference of two readings over their interval is the publish rate.
   */
  removedTotal: number;
}

/** pg_locks shows the first int4 of a two-key advisory lock as an unsigned oid. */
const asOid = (n: number) => (n < 0 ? n + 2 ** 32 : n);

/** Reads the state of an outbox table (`strand console --database-url`): three small queries. */
export async function outboxState(client: Queryable, table?: string): Promise<OutboxState> {
  const t = outboxTable(table);
  const topics = await outboxBacklog(client, t.name);
  const perShard = (
    await client.query(
      `SELECT shard, count(*)::int AS n, extract(epoch FROM clock_timestamp() - min(enqueued_at))::float8 AS age
       FROM ${t.sql} GROUP BY shard`,
    )
  ).rows as { shard: number; n: number; age: number | null }[];
  const holders = (
    await client.query(
      `SELECT l.objid::int AS shard, a.pid, coalesce(a.application_name, '') AS app,
         coalesce(host(a.client_addr), 'local') AS client, (extract(epoch FROM a.backend_start) * 1000)::float8 AS since
       FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
       WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 AND l.classid = $1::bigint::oid
         AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
      [asOid(lockSpaces(t).relays)],
    )
  ).rows as { shard: number; pid: number; app: string; client: string; since: number }[];
  const stats = (
    await client.query(
      `SELECT coalesce(sum(n_tup_del), 0)::float8 AS removed FROM pg_stat_user_tables WHERE relid = to_regclass($1)`,
      [t.sql],
    )
  ).rows as { removed: number }[];
  const relays = new Map<number, OutboxRelaySession>();
  const holderOf = new Map<number, OutboxRelaySession>();
  for (const h of holders) {
    let r = relays.get(h.pid);
    if (!r) {
      r = { pid: h.pid, application: h.app, client: h.client, since: Math.round(h.since), shards: 0 };
      relays.set(h.pid, r);
    }
    r.shards++;
    holderOf.set(h.shard, r);
  }
  const rows = new Map(perShard.map((r) => [Number(r.shard), r]));
  const shards = Array.from({ length: OUTBOX_SHARDS }, (_, shard) => ({
    shard,
    pending: rows.get(shard)?.n ?? 0,
    oldestAgeSeconds: Math.max(0, rows.get(shard)?.age ?? 0),
    relay: holderOf.get(shard),
  }));
  return {
    table: t.name,
    at: Date.now(),
    topics,
    shards,
    relays: [...relays.values()].sort((a, b) => a.pid - b.pid),
    removedTotal: stats[0]?.removed ?? 0,
  };
}

/**
 * Reads an outbox table over a short-lived connection (one per reading, so a database restart
 * costs one failed reading): what `strand lag --database-url` and the console show. A fault
 * throws an error with one line saying what to check.
 */
export class OutboxReader {
  readonly table: string;

  constructor(
    readonly url: string,
    table?: string,
  ) {
    this.table = outboxTable(table, '--outbox-table').name;
  }

  private async with<T>(fn: (client: Queryable) => Promise<T>): Promise<T> {
    const { Client } = await loadPg();
    const client = new Client({
      connectionString: this.url,
      connectionTimeoutMillis: 5000,
      application_name: 'strand-outbox-reader',
    });
    client.on('error', () => undefined);
    try {
      await client.connect();
      return await fn(client);
    } catch (error) {
      throw new Error(`outbox: ${describeFault(error, this.url)}`);
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  /** Rows waiting per job topic, a zero row for each of `topics` without any. */
  backlog(topics: string[]): Promise<OutboxBacklog[]> {
    return this.with(async (client) => {
      const backlog = await outboxBacklog(client, this.table);
      return topics.map(
        (topic) => backlog.find((b) => b.topic === topic) ?? { topic, pending: 0, oldestAgeSeconds: 0 },
      );
    });
  }

  state(): Promise<OutboxState> {
    return this.with((client) => outboxState(client, this.table));
  }
}
