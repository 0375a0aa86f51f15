import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { replayGroupName } from '../../src/lag/replayed.js';
import { runCli } from '../support/cli.js';
import {
  chromiumMissing,
  openBrowserPage,
  type RunningConsole,
  startConsole,
} from '../support/console-process.js';
import {
  deadAfterKeyReplay,
  deadJobs,
  deleteReplayGroups,
  ids,
  replayedIds,
  writeDead,
} from '../support/dead-jobs.js';
import { committedOffsets, jobTopic, waitUntil } from '../support/helpers.js';
import { skipWhenMissing } from '../support/optional.js';

// The console's filter replay (preview, task page) in Chromium, against dead jobs written with
// kafkajs' own producer; what reaches the job topic is read back with an independent client.

describe('strand console: filter replays', () => {
  let console_: RunningConsole;
  let browser: Browser;
  let page: Page;
  const missing = chromiumMissing();
  beforeEach((ctx) => skipWhenMissing(ctx, missing));

  beforeAll(async () => {
    if (missing) return;
    console_ = await startConsole();
    ({ browser, page } = await openBrowserPage(1400, 900));
  });

  afterAll(async () => {
    await browser?.close().catch(() => undefined);
    await console_?.stop();
  });

  /** Opens the dead letters of `topic` with a filter and asks for the replay's dry run. */
  async function preview(topic: string, filter: { key?: string; rate?: number } = {}): Promise<number> {
    const key = filter.key === undefined ? '' : `&key=${encodeURIComponent(filter.key)}`;
    await page.goto(`${console_.url}/dlq?topic=${topic}${key}`);
    if (filter.rate !== undefined)
      await page.locator('[data-testid="replay-filter-form"] input[name="rate"]').fill(String(filter.rate));
    await page.locator('[data-testid="replay-filter-form"] button').click();
    await page.waitForURL(/\/dlq\/preview\?/);
    return Number(await page.locator('[data-testid="preview-count"]').textContent());
  }

  it("one key's replay on 6 partitions finishes (the coordinator's CONCURRENT_TRANSACTIONS is retried)", async () => {
    const { topic, cleanup } = await jobTopic('console-replay-key', { partitions: 6 });
    const dead = deadJobs(12, (i) => ({ key: `k${i}`, partition: i % 6 }));
    await writeDead(topic, dead);
    for (const i of [7, 2]) {
      expect(await preview(topic, { key: `k${i}` })).toBe(1);
      await page.locator('[data-testid="replay-confirm"]').click();
      await page.waitForURL(/\/dlq\/task\?/);
      await page.waitForSelector('[data-testid="task"]:not([data-state="running"])', { timeout: 60_000 });
      const text = await page.locator('[data-testid="task"]').textContent();
      expect(await page.locator('[data-testid="task"]').getAttribute('data-state'), text ?? '').toBe('done');
      expect(await page.locator('[data-testid="task-sent"]').textContent()).toBe('1');
    }
    expect(await replayedIds(topic, ids([dead[2]!, dead[7]!]))).toEqual(ids([dead[2]!, dead[7]!]));
    await deleteReplayGroups(topic);
    await cleanup();
  });

  it('a replay stopped partway shows exactly what it sent and that replaying the filter again is safe', async () => {
    const { topic, cleanup } = await jobTopic('console-replay-stopped', { partitions: 2 });
    // Two DLQ partitions, two transactions of 6 jobs (about 6 s each at 1 job/s).
    const dead = deadJobs(12, (i) => ({ partition: i % 2 }));
    await writeDead(topic, dead);
    expect(await preview(topic, { rate: 1 })).toBe(12);
    await page.locator('[data-testid="replay-confirm"]').click();
    await page.waitForURL(/\/dlq\/task\?/);
    const group = replayGroupName(topic, {});
    await waitUntil(
      async () => [...(await committedOffsets(group, `${topic}.dlq`)).values()].some((o) => o > 0),
      {
        timeoutMs: 40_000,
        intervalMs: 100,
        what: "the console replay's first transaction",
      },
    );
    // The same filter replayed from the CLI fences the console's run and sends the rest.
    const cli = await runCli(['dlq', 'replay', topic]);
    expect(cli.stdout, cli.stderr).toMatch(/^replayed 6 job\(s\)/);
    await page.waitForSelector('[data-testid="task"][data-state="failed"]', { timeout: 60_000 });
    expect(await page.locator('[data-testid="task-sent"]').textContent()).toBe('6');
    const stopped = await page.locator('[data-testid="task-stopped"]').textContent();
    expect(stopped?.trim()).toMatch(/^Stopped after sending 6 job\(s\): .+\./);
    expect(stopped).toContain('replaying the same filter again sends only the rest, none twice');
    expect(await replayedIds(topic, ids(dead))).toEqual(ids(dead));
    // "Preview the rest": the CLI sent it, so nothing is left.
    await page.locator('[data-testid="task-again"]').click();
    await page.waitForURL(/\/dlq\/preview\?/);
    expect(await page.locator('[data-testid="preview-count"]').textContent()).toBe('0');
    await deleteReplayGroups(topic);
    await cleanup();
  });

  it('after earlier replays the preview and `strand dlq replay --dry-run` agree, and so does the replay', async () => {
    const { topic, cleanup } = await jobTopic('console-replay-dry', { partitions: 2 });
    const { later } = await deadAfterKeyReplay(topic);
    const dry = await runCli(['dlq', 'replay', topic, '--key', 'acct-a', '--dry-run', '--json']);
    const cli = (JSON.parse(dry.stdout) as { matched: number }).matched;
    expect(await preview(topic, { key: 'acct-a' })).toBe(cli);
    expect(cli).toBe(3);
    const rows = await page
      .locator('[data-testid="dead-row"]')
      .evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-job-id')));
    expect(rows.sort()).toEqual(ids(later.slice(0, 3)));
    // Unfiltered: 15, of which the 5 the key's replay sent are marked and warned about, in both.
    const all = JSON.parse((await runCli(['dlq', 'replay', topic, '--dry-run', '--json'])).stdout) as {
      matched: number;
      jobs: { replayed: boolean }[];
    };
    expect(await preview(topic)).toBe(all.matched);
    expect(all.jobs.filter((j) => j.replayed)).toHaveLength(5);
    expect(await page.locator('.notice.warn').textContent()).toMatch(/^5 of them were replayed before/);
    // What the preview counted is what the replay sends.
    await preview(topic, { key: 'acct-a' });
    await page.locator('[data-testid="replay-confirm"]').click();
    await page.waitForSelector('[data-testid="task"][data-state="done"]', { timeout: 60_000 });
    expect(await page.locator('[data-testid="task-sent"]').textContent()).toBe('3');
    await deleteReplayGroups(topic);
    await cleanup();
  });
});
