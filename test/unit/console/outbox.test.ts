import { describe, expect, it } from 'vitest';
import type { ConsoleModel } from '../../../src/console/model.js';
import { OutboxWatch } from '../../../src/console/outbox.js';
import type { PageContext } from '../../../src/console/pages/context.js';
import { outboxPage } from '../../../src/console/pages/outbox.js';
import { createLogger } from '../../../src/observability/logger.js';
import { OutboxReader, type OutboxState } from '../../../src/outbox/reader.js';
import { OUTBOX_SHARDS } from '../../../src/outbox/table.js';

function state(at: number, removedTotal: number, pending = 0): OutboxState {
  const relay = {
    pid: 42,
    application: 'strand-outbox-relay t',
    client: '10.0.0.5',
    since: at - 60_000,
    shards: 32,
  };
  return {
    table: 't',
    at,
    topics: pending ? [{ topic: 'payments', pending, oldestAgeSeconds: 3 }] : [],
    shards: Array.from({ length: OUTBOX_SHARDS }, (_, shard) => ({
      shard,
      pending: shard === 0 ? pending : 0,
      oldestAgeSeconds: shard === 0 && pending ? 3 : 0,
      relay,
    })),
    relays: [relay],
    removedTotal,
  };
}

/** A watch whose reader answers from `readings` in turn (an Error is a failed reading). */
function watchOf(readings: (OutboxState | Error)[], rejected = 0): OutboxWatch {
  const w = new OutboxWatch('postgres://x@db/app', 't', {
    rejected: async () => rejected,
    jobTopics: () => ['payments'],
    logger: createLogger({ level: 'silent' }),
  });
  let i = 0;
  Object.defineProperty(w, 'reader', {
    value: {
      table: 't',
      state: async () => {
        const r = readings[i++]!;
        if (r instanceof Error) throw r;
        return r;
      },
    },
  });
  return w;
}

const ctx = (outbox: OutboxWatch | undefined) =>
  ({ model: { outbox } as unknown as ConsoleModel, query: new URLSearchParams() }) as unknown as PageContext;

describe('console: the outbox', () => {
  it('publish rate = rows removed between two readings over their interval; none across a counter reset', async () => {
    const w = watchOf([state(0, 100), state(5000, 150), state(10_000, 20), state(15_000, 20)]);
    await w.sample();
    expect(w.publishedPerSec).toBe(0);
    await w.sample();
    expect(w.publishedPerSec).toBe(10);
    await w.sample(); // statistics reset (or a server restart): the counter went back
    expect(w.publishedPerSec).toBe(0);
    await w.sample();
    expect(w.publishedPerSec).toBe(0);
    expect(w.history.map((p) => p.publishedPerSec)).toEqual([0, 10, 0, 0]);
  });

  it('a failed reading keeps the last state and says why; the page shows it', async () => {
    const w = watchOf(
      [state(0, 0, 7), new Error('outbox: cannot reach PostgreSQL at db:5432 (ECONNREFUSED)')],
      2,
    );
    await w.sample();
    await w.sample();
    expect(w.error).toMatch(/cannot reach PostgreSQL/);
    expect(w.state?.topics[0]?.pending).toBe(7);
    expect(w.rejected.get('payments')).toBe(2);
    const body = outboxPage(ctx(w)).body.value;
    expect(body).toContain('Last reading failed (outbox: cannot reach PostgreSQL');
    expect(body).toMatch(/data-testid="outbox-pending">7</);
    expect(body).toMatch(/data-testid="outbox-rejected-total">2</);
    expect(body).toContain(`32 / ${OUTBOX_SHARDS}`);
  });

  it('without --database-url the page says how to turn it on', () => {
    expect(outboxPage(ctx(undefined)).body.value).toContain('--database-url');
  });

  it('a bad --outbox-table is one error naming the option', () => {
    expect(() => new OutboxReader('postgres://x@db/app', 'drop table;')).toThrow(/--outbox-table/);
  });
});
