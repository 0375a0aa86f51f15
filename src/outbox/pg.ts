import { outboxTable, type Queryable } from './table.js';

/** The URL without its password, for logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}

function where(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname || 'localhost'}:${u.port || 5432}${u.pathname && u.pathname !== '/' ? u.pathname : ''}`;
  } catch {
    return 'the database URL';
  }
}

/** One line saying what went wrong and what to check, for a relay or CLI fault. */
export function describeFault(error: unknown, url: string): string {
  const e = error as { code?: string; message?: string; name?: string };
  const message = (e.message ?? String(error)).split('\n')[0] ?? '';
  const at = where(url);
  switch (e.code) {
    case 'ECONNREFUSED':
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'ETIMEDOUT':
    case 'EHOSTUNREACH':
    case 'ECONNRESET':
      return `cannot reach PostgreSQL at ${at} (${e.code}); check --database-url`;
    case '28P01':
    case '28000':
      return `PostgreSQL at ${at} refused the login: ${message}`;
    case '3D000':
      return `PostgreSQL at ${at}: ${message}; check --database-url`;
    case '42P01':
      return `PostgreSQL at ${at}: ${message} (create it with "strand outbox migrate")`;
    case '57P01':
    case '57P02':
    case '57P03':
      return `PostgreSQL at ${at} is shutting down or starting (${message})`;
  }
  if (/timeout expired|Connection terminated|connection ended/i.test(message))
    return `lost PostgreSQL at ${at} (${message})`;
  if (e.name?.startsWith('KafkaJS')) return `Kafka: ${message}`;
  return message;
}

/** What waits in an outbox table, per job topic (for `strand lag` and tests). */
export interface OutboxBacklog {
  topic: string;
  pending: number;
  /** Age of the oldest row in seconds (0 when none). */
  oldestAgeSeconds: number;
}

export async function outboxBacklog(client: Queryable, table?: string): Promise<OutboxBacklog[]> {
  const t = outboxTable(table);
  const { rows } = await client.query(
    `SELECT topic, count(*)::text AS n, extract(epoch FROM clock_timestamp() - min(enqueued_at))::float8 AS age
     FROM ${t.sql} GROUP BY topic ORDER BY topic`,
  );
  return (rows as { topic: string; n: string; age: number | null }[]).map((r) => ({
    topic: r.topic,
    pending: Number(r.n),
    oldestAgeSeconds: Math.max(0, r.age ?? 0),
  }));
}
