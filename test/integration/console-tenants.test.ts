import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  chromiumMissing,
  openBrowserPage,
  type RunningConsole,
  startConsole,
} from '../support/console-process.js';
import { jobTopic, uniqueName, waitUntil } from '../support/helpers.js';
import { enqueueTenant } from '../support/jobs.js';
import { skipWhenMissing } from '../support/optional.js';
import { WorkerFleet } from '../support/processes.js';

// The group page's waiting tenants in Chromium: a worker process with tenants and a per-tenant
// rate publishes its tenant queue in its status snapshots; the console sums them per group.

const SHOTS = process.env.STRAND_CONSOLE_SHOTS ?? '.strand/console-shots';

describe('strand console: waiting tenants', () => {
  let console_: RunningConsole;
  let browser: Browser;
  let page: Page;
  let fleet: WorkerFleet | undefined;
  const missing = chromiumMissing();
  beforeEach((ctx) => skipWhenMissing(ctx, missing));

  beforeAll(async () => {
    if (missing) return;
    console_ = await startConsole();
    ({ browser, page } = await openBrowserPage(1400, 1000));
  });

  afterEach(async () => {
    await fleet?.killAll();
    fleet = undefined;
  });

  afterAll(async () => {
    await browser?.close().catch(() => undefined);
    await console_?.stop();
  });

  it("the group page lists the tenants waiting in the workers' queues and what the limits held back", async () => {
    const { topic, cleanup } = await jobTopic('console-tenants', { partitions: 3 });
    const groupId = uniqueName('console-tenants-g');
    await enqueueTenant(topic, 'acme', 400, 8);
    await enqueueTenant(topic, 'beta', 200, 8);
    await enqueueTenant(topic, 'gamma', 100, 8);
    // 2 starts per second per tenant (per worker: no store), every buffered job runnable.
    fleet = new WorkerFleet({
      topic,
      groupId,
      ordering: 'unordered',
      concurrency: 8,
      limits: { perTenantRate: '2/s' },
    });
    const worker = fleet.start();
    let rows: { tenant: string | null; waiting: number }[] = [];
    await waitUntil(
      async () => {
        await page.goto(`${console_.url}/group?name=${encodeURIComponent(groupId)}`);
        if ((await page.locator('[data-testid="tenant-table"]').count()) === 0) return false;
        rows = await page.locator('[data-testid="tenant-row"]').evaluateAll((trs) =>
          trs.map((tr) => ({
            tenant: tr.getAttribute('data-tenant'),
            waiting: Number(
              tr.querySelector('[data-testid="tenant-waiting"]')?.textContent?.replace(/,/g, '') ?? 0,
            ),
          })),
        );
        return rows.length === 3 && (await page.locator('[data-testid="limited-row"]').count()) > 0;
      },
      {
        timeoutMs: 90_000,
        intervalMs: 1000,
        what: 'three waiting tenants and a limit count on the group page',
      },
    );
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: join(SHOTS, 'group-tenants.png'), fullPage: true });
    // Most waiting first; every tenant has runnable jobs held back by its rate.
    expect(rows.map((r) => r.tenant)).toEqual(['acme', 'beta', 'gamma']);
    expect(rows.every((r) => r.waiting > 0)).toBe(true);
    const limited = page.locator(
      '[data-testid="limited-row"][data-limit="tenant_rate"] [data-testid="limited-total"]',
    );
    expect(Number((await limited.textContent())?.replace(/,/g, ''))).toBeGreaterThan(0);
    await fleet.kill(worker, 'SIGTERM');
    await cleanup();
  }, 180_000);
});
