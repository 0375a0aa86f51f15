import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type Payment, paymentProducer, paymentSchema } from '../../chaos/payments.js';
import { createKafka } from '../../src/kafka/client.js';
import { computeLag } from '../../src/lag/lag.js';
import { JobProducer } from '../../src/producer/job-producer.js';
import { runCli } from '../support/cli.js';
import { jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { skipWhenMissing } from '../support/optional.js';

// The Strand Console in a real browser (Debian's chromium through playwright-core) against the
// test stack, with a worker process (test/support/console-worker.ts) whose ledger says what ran.

const CHROMIUM = process.env.STRAND_CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = 'docs/console';
const TIER_MS = 60_000;
const HTML_KEY = `<img src=x onerror="window.__pwned='img'">`;
const HTML_ID = `<script>window.__pwned='script'</script>`;

interface Running {
  child: ChildProcess;
  url: string;
  /** What the console printed so far. */
  log: () => string;
}

/** Starts `strand console` and resolves with its URL once it listens. */
function startConsole(args: string[]): Promise<Running> {
  const { brokers, registryUrl } = stack();
  const child = spawn(process.execPath, ['dist/cli/main.js', 'console', '--port', '0', ...args], {
    env: {
      ...process.env,
      STRAND_BROKERS: brokers.join(','),
      STRAND_REGISTRY_URL: registryUrl,
      NO_COLOR: '1',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`console did not start: ${out}`)), 30_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /Strand console on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1]!, log: () => out });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`console exited with ${code}: ${out}`)));
  });
}

function stop(child: ChildProcess | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  return new Promise((resolve) => {
    if (!child || child.exitCode !== null || child.signalCode !== null) return resolve();
    const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill(signal);
  });
}

describe('strand console', () => {
  let topic: string;
  let group: string;
  let cleanup: () => Promise<void>;
  let dir: string;
  let ledger: string;
  let token: string;
  let tokenFile: string;
  let main: Running;
  let readOnly: Running;
  let worker: ChildProcess;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let producer: JobProducer<Payment>;
  let seq = 0;
  const pageErrors: string[] = [];
  const dialogs: string[] = [];
  const ids: { dead: string; html: string } = { dead: '', html: '' };

  const payment = (memo: string | null, over: Partial<Payment> = {}): { key: string; data: Payment } => {
    seq++;
    const data: Payment = {
      paymentId: `pay-${seq}`,
      accountId: `acct-${seq % 4}`,
      amountCents: 100 * seq,
      currency: 'EUR',
      sequence: seq,
      createdAt: Date.now(),
      memo,
      ...over,
    };
    return { key: data.accountId, data };
  };

  const ledgerLines = () =>
    existsSync(ledger)
      ? readFileSync(ledger, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => {
            const [kind, jobId, , , , , at] = l.split(' ');
            return { kind: kind!, jobId: jobId!, at: Number(at) };
          })
      : [];

  const go = async (path: string, base = main.url) => {
    await page.goto(`${base}${path}`);
  };

  // Without chromium every test is skipped with the one-line reason (fails in CI).
  const missing = existsSync(CHROMIUM)
    ? undefined
    : `${CHROMIUM} not found: apt-get install chromium (.ci/run does), or set STRAND_CHROMIUM`;
  beforeEach((ctx) => skipWhenMissing(ctx, missing));

  beforeAll(async () => {
    if (missing) return;
    ({ topic, cleanup } = await jobTopic('console', {
      partitions: 3,
      tierDelays: [TIER_MS],
      delayBucketsMs: [1000, 60_000],
    }));
    group = uniqueName('console-workers');
    dir = mkdtempSync(join(tmpdir(), 'strand-console-'));
    ledger = join(dir, 'ledger.txt');
    token = randomBytes(24).toString('base64url');
    tokenFile = join(dir, 'token');
    writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
    const { brokers, registryUrl } = stack();
    worker = spawn(process.execPath, ['dist/cli/main.js', 'worker', 'test/support/console-worker.ts'], {
      env: {
        ...process.env,
        STRAND_BROKERS: brokers.join(','),
        STRAND_REGISTRY_URL: registryUrl,
        STRAND_LOG_LEVEL: 'error',
        STRAND_TEST_WORKER: JSON.stringify({ topic, groupId: group, ledger, tiers: [TIER_MS] }),
      },
      stdio: 'ignore',
    });
    [main, readOnly] = await Promise.all([
      startConsole(['--auth-token-file', tokenFile]),
      startConsole(['--read-only']),
    ]);
    producer = await paymentProducer(stack(), topic);
    const sent = await producer.enqueueMany([
      ...Array.from({ length: 12 }, () => payment(null)),
      payment('dead-until-replayed'),
      payment('poison', { accountId: HTML_KEY, paymentId: HTML_ID }),
      // Its own key: waiting in the tier, it parks its key (retry.ordering strict), not acct-0..3.
      payment('later', { accountId: 'acct-later' }),
    ]);
    // Three jobs due in an hour: the tiers page shows them waiting in the delay buckets.
    await producer.enqueueMany(
      Array.from({ length: 3 }, () => ({ ...payment('later-delayed'), delay: '1h' })),
    );
    ids.dead = sent[12]!.jobId;
    ids.html = sent[13]!.jobId;
    // A second schema version for the Schemas page's diff, and a job written with it.
    const v2 = JSON.parse(JSON.stringify(paymentSchema)) as { fields: object[] };
    v2.fields.push({ name: 'channel', type: ['null', 'string'], default: null, doc: 'Where it came from.' });
    const p2 = new JobProducer<Payment & { channel: string | null }>({
      brokers,
      registry: { url: registryUrl },
      topic,
      schema: v2,
    });
    await p2.connect();
    await p2.enqueue({
      key: 'acct-9',
      data: { ...payment(null).data, accountId: 'acct-9', channel: 'mobile' },
    });
    await p2.disconnect();

    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
    context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    page = await context.newPage();
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.dismiss();
    });
    page.on('console', (m) => {
      if (m.type() === 'error' && !/status of 40[134]/.test(m.text())) pageErrors.push(m.text());
    });
    mkdirSync(SHOTS, { recursive: true });
  });

  // A failed test shows what the console logged and what the page said, not only a timeout.
  afterEach(async (ctx) => {
    if (ctx.task.result?.state !== 'fail') return;
    const text = await page
      ?.locator('body')
      .innerText()
      .catch(() => '');
    console.error(
      `console log (tail):\n${main?.log().slice(-3000)}\npage ${page?.url()}:\n${text?.slice(0, 2000)}\nledger:\n${ledgerLines()
        .slice(-30)
        .map((l) => `${l.kind} ${l.jobId}`)
        .join('\n')}`,
    );
  });

  afterAll(async () => {
    await browser?.close().catch(() => undefined);
    await producer?.disconnect().catch(() => undefined);
    await Promise.all([stop(worker), stop(main?.child), stop(readOnly?.child)]);
    await cleanup?.();
  });

  it('refuses a POST without the token (401) or the CSRF token (403); --read-only has no action buttons and refuses POSTs', async () => {
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    const body = `group=${encodeURIComponent(group)}&action=pause`;
    const noToken = await fetch(`${main.url}/controls`, { method: 'POST', headers: form, body });
    expect(noToken.status).toBe(401);
    const noCsrf = await fetch(`${main.url}/controls`, {
      method: 'POST',
      headers: { ...form, authorization: `Bearer ${token}` },
      body,
    });
    expect(noCsrf.status).toBe(403);
    const wrongCsrf = await fetch(`${main.url}/controls`, {
      method: 'POST',
      headers: { ...form, authorization: `Bearer ${token}`, cookie: 'strand_csrf=abc' },
      body: `${body}&_csrf=not-the-token`,
    });
    expect(wrongCsrf.status).toBe(403);
    // Pages need the token too: a browser is sent to the login page.
    const anonymous = await fetch(`${main.url}/dlq?topic=${topic}`, { redirect: 'manual' });
    expect(anonymous.status).toBe(303);
    expect(anonymous.headers.get('location')).toMatch(/^\/login/);
    expect(anonymous.headers.get('content-security-policy')).toContain("script-src 'self'");

    // The read-only console: no forms that post, and every action refused.
    for (const path of ['/controls', `/dlq?topic=${topic}`, '/workers', '/']) {
      await go(path, readOnly.url);
      expect(await page.locator('form[method="post"]').count(), path).toBe(0);
      expect(await page.locator('[data-testid="pause"], [data-testid="replay-one"]').count(), path).toBe(0);
    }
    await go('/', readOnly.url);
    await expect.poll(() => page.locator('.badge.ro').count()).toBe(1);
    for (const path of ['/controls', '/dlq/replay', '/dlq/replay-one']) {
      const res = await fetch(`${readOnly.url}${path}`, { method: 'POST', headers: form, body });
      expect(res.status, path).toBe(403);
    }

    // Exposed without protection: refuses to start, one line, exit 2.
    const exposed = await runCli(['console', '--host', '0.0.0.0', '--port', '0']);
    expect(exposed.code).toBe(2);
    expect(exposed.stderr.trim().split('\n')).toHaveLength(1);
    expect(exposed.stderr).toMatch(/without --auth-token-file or --read-only/);

    // Log in through the page: the session cookie is HttpOnly.
    await go('/');
    expect(new URL(page.url()).pathname).toBe('/login');
    await page.fill('input[name="token"]', 'wrong-token-wrong-token');
    await page.click('[data-testid="login-form"] button');
    await expect.poll(() => page.locator('.notice.error').textContent()).toContain('Wrong token');
    await page.fill('input[name="token"]', token);
    await page.click('[data-testid="login-form"] button');
    await page.waitForURL(`${main.url}/`);
    const session = (await context.cookies()).find((c) => c.name === 'strand_session');
    expect(session?.httpOnly).toBe(true);
    expect(session?.value).not.toBe(token);
  });

  it('pause from the Controls page stops the worker taking jobs within 5 s; shown on the Workers page', async () => {
    await go('/workers');
    await page.waitForSelector(`tr[data-testid="worker-row"][data-state="running"]`, { timeout: 60_000 });
    // Everything enqueued so far ran (the two dead ones and the tier one started too).
    await waitUntil(() => ledgerLines().filter((l) => l.kind === 'S').length >= 16, {
      timeoutMs: 30_000,
      what: 'the first jobs to start',
    });
    await go('/controls');
    const section = page.locator(`[data-testid="control"][data-group="${group}"]`);
    const clicked = Date.now();
    await section.locator('[data-testid="pause"]').click();
    await page.waitForURL(/\/controls\?done=pause/);
    // Jobs enqueued 5 s after the click must not start while paused.
    await new Promise((r) => setTimeout(r, Math.max(0, clicked + 5000 - Date.now())));
    await producer.enqueueMany(Array.from({ length: 20 }, () => payment(null)));
    await go('/workers');
    await page.waitForSelector(`tr[data-testid="worker-row"][data-state="paused"]`, { timeout: 10_000 });
    await expect
      .poll(() => page.locator(`[data-testid="group-state"][data-group="${group}"]`).textContent())
      .toContain('paused (1/1 workers)');
    await new Promise((r) => setTimeout(r, 4000));
    const late = ledgerLines().filter((l) => l.kind === 'S' && l.at > clicked + 5000);
    expect(late).toEqual([]);
    await page.screenshot({ path: `${SHOTS}/workers.png`, fullPage: true });
  });

  it('the overview shows the group, and its lag equals the lag computed with the admin client', async () => {
    const admin = createKafka(stack().connection).admin();
    await admin.connect();
    try {
      const section = page.locator(`[data-testid="group"][data-group="${group}"]`);
      let shown: Record<string, number> = {};
      let expected: Record<string, number> = {};
      await waitUntil(
        async () => {
          await go('/');
          shown = {};
          for (const row of await section.locator('[data-testid="lag-row"]').all()) {
            const key = `${await row.getAttribute('data-topic')}:${await row.getAttribute('data-partition')}`;
            shown[key] = Number(await row.locator('[data-testid="lag"]').textContent());
          }
          const lag = await computeLag(admin, group, [topic, `${topic}.retry.1`]);
          expected = Object.fromEntries(lag.map((l) => [`${l.topic}:${l.partition}`, l.lag]));
          const total = Object.values(expected).reduce((a, b) => a + b, 0);
          return total >= 20 && JSON.stringify(shown) === JSON.stringify(expected);
        },
        { timeoutMs: 30_000, intervalMs: 1000, what: 'the page lag to match the admin client' },
      ).catch(() => undefined);
      expect(shown).toEqual(expected);
      const total = Object.values(expected).reduce((a, b) => a + b, 0);
      expect(Number(await section.locator('[data-testid="total-lag"]').textContent())).toBe(total);
      expect(await section.locator('h2').textContent()).toContain(topic);
      await expect.poll(() => section.locator('[data-testid="workers-alive"]').textContent()).toBe('1');
    } finally {
      await admin.disconnect();
    }
  });

  it('resume from the Controls page restarts the worker', async () => {
    const before = ledgerLines().filter((l) => l.kind === 'C').length;
    await go('/controls');
    await page.locator(`[data-testid="control"][data-group="${group}"] [data-testid="resume"]`).click();
    await page.waitForURL(/\/controls\?done=resume/);
    // The 20 jobs enqueued while paused (and the v2 one) complete.
    await waitUntil(() => ledgerLines().filter((l) => l.kind === 'C').length >= before + 20, {
      timeoutMs: 30_000,
      what: 'the backlog to complete after resume',
    });
    await page.waitForSelector(
      `[data-testid="control"][data-group="${group}"] .badge.ok:has-text("running")`,
      { timeout: 15_000 },
    );
    await page.screenshot({ path: `${SHOTS}/controls.png`, fullPage: true });
  });

  it("the DLQ page shows a dead job's decoded payload; replaying it from the page completes it and the DLQ depth drops", async () => {
    await go(`/dlq?topic=${topic}`);
    const row = page.locator(`tr[data-testid="dead-row"][data-job-id="${ids.dead}"]`);
    await row.waitFor({ timeout: 60_000 });
    await page.screenshot({ path: `${SHOTS}/dead-letters.png`, fullPage: true });
    await row.locator('[data-testid="dead-link"]').click();
    await page.waitForURL(/\/dlq\/job\?/);
    const payload = JSON.parse(
      (await page.locator('[data-testid="payload"]').textContent()) ?? '{}',
    ) as Payment;
    expect(payload).toMatchObject({ memo: 'dead-until-replayed', currency: 'EUR' });
    expect(await page.locator('[data-testid="error-class"]').textContent()).toBe('NonRetriableError');
    const jobUrl = page.url();
    await page.screenshot({ path: `${SHOTS}/dead-job.png`, fullPage: true });

    const depthOnOverview = async () => {
      await go('/');
      return Number(
        await page
          .locator(`[data-testid="group"][data-group="${group}"] [data-testid="dlq-depth"]`)
          .textContent(),
      );
    };
    await waitUntil(async () => (await depthOnOverview()) === 2, { timeoutMs: 20_000, what: 'DLQ depth 2' });
    await page.goto(jobUrl);
    await page.locator('[data-testid="replay-one"]').click();
    await page.waitForURL(/done=sent/);
    expect(await page.locator('.notice.ok').textContent()).toContain(`Replayed to ${topic}`);
    // No second replay button: the job is marked replayed.
    expect(await page.locator('[data-testid="replay-one"]').count()).toBe(0);
    await waitUntil(() => ledgerLines().some((l) => l.kind === 'C' && l.jobId === ids.dead), {
      timeoutMs: 60_000,
      what: 'the replayed job to complete in the worker',
    });
    await waitUntil(async () => (await depthOnOverview()) === 1, { timeoutMs: 20_000, what: 'DLQ depth 1' });
    await page.screenshot({ path: `${SHOTS}/overview.png`, fullPage: true });
  });

  it('an HTML payload renders as text and its script never runs', async () => {
    await go(`/dlq?topic=${topic}`);
    const row = page.locator(`tr[data-testid="dead-row"][data-job-id="${ids.html}"]`);
    await row.waitFor({ timeout: 60_000 });
    expect(await row.locator('td').nth(2).textContent()).toBe(HTML_KEY);
    await row.locator('[data-testid="dead-link"]').click();
    await page.waitForURL(/\/dlq\/job\?/);
    expect(await page.locator('[data-testid="dead-key"]').textContent()).toBe(HTML_KEY);
    expect(await page.locator('[data-testid="payload"]').textContent()).toContain(HTML_ID);
    // Browse the job topic and find it by key: the same bytes, shown as text.
    await go(`/jobs?topic=${topic}&find=${encodeURIComponent(HTML_KEY)}`);
    await expect.poll(() => page.locator('[data-testid="record-key"]').first().textContent()).toBe(HTML_KEY);
    // Wait for a live refresh to have swapped the regions in as well.
    await new Promise((r) => setTimeout(r, 6000));
    for (const path of [`/dlq?topic=${topic}`, `/jobs?topic=${topic}&find=${encodeURIComponent(HTML_KEY)}`]) {
      await go(path);
      expect(await page.locator('img[src="x"]').count(), path).toBe(0);
      expect(await page.locator('main script').count(), path).toBe(0);
      expect(await page.evaluate(() => (globalThis as { __pwned?: string }).__pwned), path).toBeUndefined();
    }
    expect(dialogs).toEqual([]);
  });

  it('a filter replay shows the dry-run count first, then sends at the given rate', async () => {
    await go(`/dlq?topic=${topic}&key=${encodeURIComponent(HTML_KEY)}`);
    await page.locator('[data-testid="replay-filter-form"] input[name="rate"]').fill('5');
    await page.locator('[data-testid="replay-filter-form"] button').click();
    await page.waitForURL(/\/dlq\/preview\?/);
    expect(await page.locator('[data-testid="preview-count"]').textContent()).toBe('1');
    expect(await page.locator('[data-testid="dead-row"]').getAttribute('data-job-id')).toBe(ids.html);
    await page.screenshot({ path: `${SHOTS}/replay-preview.png`, fullPage: true });
    await page.locator('[data-testid="replay-confirm"]').click();
    await page.waitForURL(/\/dlq\/task\?/);
    await page.waitForSelector('[data-testid="task"][data-state="done"]', { timeout: 60_000 });
    expect(await page.locator('[data-testid="task-sent"]').textContent()).toBe('1');
    // The poison job runs again (and goes back to the DLQ: it always fails).
    await waitUntil(() => ledgerLines().filter((l) => l.kind === 'S' && l.jobId === ids.html).length >= 2, {
      timeoutMs: 60_000,
      what: 'the replayed poison job to run again',
    });
  });

  it('every page renders without script errors (screenshots in docs/console)', async () => {
    // v2 of the subject shows on the job written with it (found by its key).
    await go(`/jobs?topic=${topic}&find=acct-9`);
    expect(await page.locator('[data-testid="records"]').textContent()).toContain(`${topic}-value v2`);
    await go(`/jobs?topic=${topic}&limit=12`);
    await page.locator('[data-testid="record"]').first().waitFor();
    await page.screenshot({ path: `${SHOTS}/jobs.png`, fullPage: true });

    await go('/tiers');
    const tier = page.locator(`[data-testid="tier-row"][data-topic="${topic}.retry.1"]`);
    await expect
      .poll(() => tier.locator('[data-testid="tier-waiting"]').textContent(), { timeout: 20_000 })
      .toBe('1');
    await expect
      .poll(() => page.locator('[data-testid="delayed-total"]').first().textContent(), { timeout: 20_000 })
      .toBe('3 not yet due');
    await page.screenshot({ path: `${SHOTS}/retry-tiers.png`, fullPage: true });

    await go(`/schemas?q=${topic}`);
    await expect.poll(() => page.locator('[data-testid="subject-row"] td').nth(1).textContent()).toBe('2');
    await page.screenshot({ path: `${SHOTS}/schemas.png`, fullPage: true });
    await go(`/schemas/subject?subject=${topic}-value&a=1&b=2`);
    expect(await page.locator('[data-testid="field-changes"]').textContent()).toContain('channel');
    expect(await page.locator('[data-testid="diff"] .add').first().textContent()).toContain('"channel"');
    await page.screenshot({ path: `${SHOTS}/schema-diff.png`, fullPage: true });

    // The charts have points by now (a sample every 5 s) and uPlot drew them.
    await go('/');
    await page
      .locator(`[data-testid="group"][data-group="${group}"] .uplot`)
      .first()
      .waitFor({ timeout: 20_000 });
    expect(pageErrors).toEqual([]);
  });
});
