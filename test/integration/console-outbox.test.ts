import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Payment, paymentSchema } from '../../chaos/payments.js';
import { SchemaRegistryGateway } from '../../src/codec/index.js';
import { Outbox } from '../../src/outbox/outbox.js';
import { outboxState } from '../../src/outbox/reader.js';
import { OutboxRelay } from '../../src/outbox/relay.js';
import { migrateOutbox, OUTBOX_SHARDS } from '../../src/outbox/table.js';
import { CHROMIUM, chromiumMissing, type RunningConsole, startConsole } from '../support/console-process.js';
import { jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { skipWhenMissing } from '../support/optional.js';
import { needPostgres } from '../support/postgres.js';

// The outbox in the Strand Console (`strand console --database-url`), in Debian's chromium: rows
// committed with no relay running, then a relay publishing them (one row rejected by the registry
// into the DLQ) while a worker of the topic shows on the overview with its outbox column.

const SHOTS = process.env.STRAND_CONSOLE_SHOTS ?? '.strand/console-shots';

const payment = (i: number): Payment => ({
  paymentId: `p-${i}`,
  accountId: `acct-${i % 7}`,
  amountCents: 100 + i,
  currency: 'EUR',
  sequence: i,
  createdAt: 1_700_000_000_000 + i,
  memo: null,
});

async function text(page: Page, testId: string): Promise<string> {
  return (await page.getByTestId(testId).first().textContent())?.trim() ?? '';
}

describe('console: the transactional outbox', () => {
  let browser: Browser | undefined;
  let pool: pg.Pool | undefined;
  let relay: OutboxRelay | undefined;
  let worker: ChildProcess | undefined;
  let console_: RunningConsole | undefined;
  let dropTopic: (() => Promise<void>) | undefined;
  let table = '';

  beforeAll(() => {
    mkdirSync(SHOTS, { recursive: true });
  });

  afterAll(async () => {
    await browser?.close();
    await console_?.stop();
    await relay?.stop();
    if (worker && worker.exitCode === null) {
      const gone = new Promise((r) => worker!.once('exit', r));
      worker.kill('SIGTERM');
      await Promise.race([gone, new Promise((r) => setTimeout(r, 10_000))]);
      if (worker.exitCode === null) worker.kill('SIGKILL');
    }
    if (pool && table) await pool.query(`DROP TABLE IF EXISTS "${table}"`).catch(() => undefined);
    await pool?.end();
    await dropTopic?.();
  }, 60_000);

  it('shows pending rows per topic, relay and shard, the publish rate and rejected rows', async ({
    skip,
  }) => {
    const missing = chromiumMissing();
    if (missing) skipWhenMissing({ skip }, missing);
    const db = needPostgres({ skip });
    pool = new pg.Pool({ connectionString: db.url, max: 4 });
    table = uniqueName('console_outbox').replace(/-/g, '_');
    await migrateOutbox(pool, table);
    const made = await jobTopic('console-outbox', { partitions: 3 });
    dropTopic = made.cleanup;
    const topic = made.topic;
    const outbox = new Outbox<Payment>({ topic, schema: paymentSchema, table });
    const write = async (from: number, n: number) => {
      const c = await pool!.connect();
      try {
        await c.query('BEGIN');
        for (let i = from; i < from + n; i++)
          await outbox.enqueue(c, { key: `acct-${i % 7}`, data: payment(i) });
        await c.query('COMMIT');
      } finally {
        c.release();
      }
    };
    // Committed while no relay runs: they wait.
    await write(0, 12);

    const { brokers, registryUrl } = stack();
    const ledger = join(mkdtempSync(join(tmpdir(), 'strand-console-outbox-')), 'ledger');
    const group = uniqueName('console-outbox-workers');
    worker = spawn(process.execPath, ['dist/cli/main.js', 'worker', 'test/support/console-worker.ts'], {
      env: {
        ...process.env,
        STRAND_BROKERS: brokers.join(','),
        STRAND_REGISTRY_URL: registryUrl,
        STRAND_LOG_LEVEL: 'error',
        STRAND_TEST_WORKER: JSON.stringify({ topic, groupId: group, ledger, tiers: [] }),
      },
      stdio: 'ignore',
    });
    console_ = await startConsole(['--database-url', db.url, '--outbox-table', table]);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));

    await page.goto(`${console_.url}/outbox`);
    await waitUntil(
      async () => {
        await page.reload();
        return (await text(page, 'outbox-pending')) === '12';
      },
      { what: 'the console shows the 12 waiting rows', timeoutMs: 30_000 },
    );
    expect(await text(page, 'outbox-relay-count')).toBe('0');
    expect(await text(page, 'outbox-shards-held')).toBe(`0 / ${OUTBOX_SHARDS}`);
    // Its topic's row (the page also lists the job topics of the cluster's groups: other tests' too).
    const topicRow = page.locator(`[data-testid="outbox-topic"][data-topic="${topic}"]`);
    expect((await topicRow.getByTestId('outbox-topic-pending').textContent())?.trim()).toBe('12');
    // The shard rows add up to the same 12 (every row is in the shard of its key).
    const shardPending = await page
      .getByTestId('outbox-shard')
      .evaluateAll((cells) => cells.map((c) => Number(c.getAttribute('data-pending'))));
    expect(shardPending).toHaveLength(OUTBOX_SHARDS);
    expect(shardPending.reduce((a, b) => a + b, 0)).toBe(12);
    await page.screenshot({ path: `${SHOTS}/outbox-no-relay.png`, fullPage: true });

    // A row whose schema the registry rejects (a new field without a default under BACKWARD).
    const gateway = new SchemaRegistryGateway({ url: registryUrl });
    await gateway.schemaId(`${topic}-value`, paymentSchema, {
      autoRegister: true,
      compatibility: 'BACKWARD',
    });
    gateway.close();
    const v2 = {
      ...paymentSchema,
      fields: [...(paymentSchema as { fields: object[] }).fields, { name: 'region', type: 'string' }],
    };
    const bad = new Outbox({ topic, schema: v2, table });
    await bad.enqueue(pool, {
      key: 'acct-bad',
      data: { ...payment(999), region: 'eu' },
      jobId: 'rejected-1',
    });

    relay = new OutboxRelay({
      databaseUrl: db.url,
      brokers,
      registry: { url: registryUrl },
      table,
      statsIntervalMs: 1000,
    });
    await relay.start();
    // Rows keep coming while the page is watched: the publish rate is the rows removed per second.
    let next = 100;
    const feeding = setInterval(() => {
      void write(next, 3).catch(() => undefined);
      next += 3;
    }, 300);
    try {
      let sawRate = 0;
      await waitUntil(
        async () => {
          await page.reload();
          sawRate = Math.max(sawRate, Number((await text(page, 'outbox-rate')).replace(/,/g, '')));
          return (
            (await text(page, 'outbox-relay-count')) === '1' &&
            (await text(page, 'outbox-shards-held')) === `${OUTBOX_SHARDS} / ${OUTBOX_SHARDS}` &&
            (await text(page, 'outbox-rejected-total')) === '1' &&
            sawRate > 0
          );
        },
        {
          what: 'one relay with every shard, a publish rate and the rejected row',
          timeoutMs: 90_000,
          intervalMs: 1000,
        },
      );
      expect(await text(page, 'relay-shards')).toBe(`${OUTBOX_SHARDS} / ${OUTBOX_SHARDS}`);
      // The relay session is the one PostgreSQL lists (its application name says so).
      const state = await outboxState(pool, table);
      expect(state.relays).toHaveLength(1);
      expect(await page.getByTestId('outbox-relay').getAttribute('data-pid')).toBe(
        String(state.relays[0]!.pid),
      );
      expect(await page.getByTestId('outbox-relay').textContent()).toContain('strand-outbox-relay');
      await page.waitForTimeout(6000);
      await page.reload();
      await page.screenshot({ path: `${SHOTS}/outbox.png`, fullPage: true });
    } finally {
      clearInterval(feeding);
    }
    // The relay publishes what the feed wrote last before it stops (CI: rows of the feed were still
    // pending when it stopped, and the page's count was not the two written next).
    await waitUntil(async () => (await outboxState(pool!, table)).topics.every((t) => t.pending === 0), {
      what: 'the relay published every row of the feed',
      timeoutMs: 60_000,
      intervalMs: 500,
    });
    await relay.stop();
    relay = undefined;
    // Everything published once the relay caught up: the page says 0 pending.
    await write(500, 2);
    await waitUntil(
      async () => {
        await page.reload();
        return (
          (await text(page, 'outbox-pending')) === '2' && (await text(page, 'outbox-relay-count')) === '0'
        );
      },
      { what: 'the stopped relay shows as gone, the new rows wait', timeoutMs: 60_000, intervalMs: 1000 },
    );

    // The overview: the worker's group row has the outbox column with the topic's waiting rows.
    await page.goto(console_.url);
    await waitUntil(
      async () => {
        await page.reload();
        return (await page.locator(`[data-testid="group-row"][data-group="${group}"]`).count()) === 1;
      },
      { what: 'the worker group on the overview', timeoutMs: 60_000, intervalMs: 1000 },
    );
    const row = page.locator(`[data-testid="group-row"][data-group="${group}"]`);
    expect((await row.getByTestId('outbox-cell').textContent())?.trim()).toMatch(/^2\b/);
    expect(await text(page, 'overview-outbox-pending')).toBe('2');
    await page.screenshot({ path: `${SHOTS}/overview-outbox.png`, fullPage: true });
    // The group's page: the topic's outbox rows next to its lag.
    await row.getByTestId('group-link').click();
    await page.waitForURL(/\/group\?/);
    expect((await page.getByTestId('group-outbox-pending').textContent())?.trim()).toMatch(/^2\b/);
    expect(errors).toEqual([]);
  }, 300_000);
});
