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
import { replayGroupPrefix } from '../../src/lag/replayed.js';
import { JobProducer } from '../../src/producer/job-producer.js';
import { runCli } from '../support/cli.js';
import { createTopics, jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { skipWhenMissing } from '../support/optional.js';
import { rawProduce } from '../support/raw-kafka.js';

// The Strand Console in a real browser (Debian's chromium through playwright-core) against the
// test stack, with a worker process (test/support/console-worker.ts) whose ledger says what ran.

const CHROMIUM = process.env.STRAND_CHROMIUM ?? '/usr/bin/chromium';
// The suite leaves tracked files alone: its screenshots go to .strand/ for a look;
// `npm run docs:screenshots` runs it with STRAND_CONSOLE_SHOTS=docs/console for the docs.
const SHOTS = process.env.STRAND_CONSOLE_SHOTS ?? '.strand/console-shots';
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

/** A `strand worker` process running test/support/console-worker.ts on `topic` for `group`. */
function startWorker(topic: string, group: string, ledger: string): ChildProcess {
  const { brokers, registryUrl } = stack();
  return spawn(process.execPath, ['dist/cli/main.js', 'worker', 'test/support/console-worker.ts'], {
    env: {
      ...process.env,
      STRAND_BROKERS: brokers.join(','),
      STRAND_REGISTRY_URL: registryUrl,
      STRAND_LOG_LEVEL: 'error',
      STRAND_TEST_WORKER: JSON.stringify({ topic, groupId: group, ledger, tiers: [TIER_MS] }),
    },
    stdio: 'ignore',
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
  /** A second group (its own topic and worker) that is killed and whose topic is deleted. */
  const second: {
    topic: string;
    group: string;
    worker?: ChildProcess;
    producer?: JobProducer<Payment>;
    cleanup?: (() => Promise<void>) | undefined;
    workerId?: string | undefined;
  } = { topic: '', group: '' };

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
    worker = startWorker(topic, group, ledger);
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
    await second.producer?.disconnect().catch(() => undefined);
    await Promise.all([stop(worker), stop(second.worker), stop(main?.child), stop(readOnly?.child)]);
    await cleanup?.();
    await second.cleanup?.();
    // A killed worker leaves its last snapshot: remove it, or other consoles list it for an hour.
    if (second.workerId)
      await rawProduce(stack().brokers, '__strand_status', [{ key: second.workerId, value: null }]).catch(
        () => undefined,
      );
    const admin = createKafka(stack().connection).admin();
    await admin.connect();
    // The test's groups, and the replay groups its DLQ replays left (they hold what was replayed).
    const replays = (await admin.listGroups().catch(() => ({ groups: [] as { groupId: string }[] }))).groups
      .map((g) => g.groupId)
      .filter((g) => [topic, second.topic].some((t) => t && g.startsWith(replayGroupPrefix(t))));
    await admin.deleteGroups([group, second.group, ...replays].filter(Boolean)).catch(() => undefined);
    await admin.disconnect();
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

  it("the overview's row of the group and the group's page show the lag computed with the admin client", async () => {
    const admin = createKafka(stack().connection).admin();
    await admin.connect();
    try {
      const section = page.locator(`[data-testid="group"][data-group="${group}"]`);
      let shown: Record<string, number> = {};
      let expected: Record<string, number> = {};
      await go('/');
      // A click on the row (not on its link) opens the group's page.
      await page
        .locator(`[data-testid="group-row"][data-group="${group}"] [data-testid="group-state"]`)
        .click();
      await page.waitForURL(/\/group\?name=/);
      const groupUrl = page.url();
      await waitUntil(
        async () => {
          await page.goto(groupUrl);
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
      expect(await page.locator('h1').textContent()).toContain(topic);
      await expect.poll(() => section.locator('[data-testid="workers-alive"]').textContent()).toBe('1');
      await go('/');
      const row = page.locator(`[data-testid="group-row"][data-group="${group}"]`);
      expect(Number(await row.locator('[data-testid="total-lag"]').textContent())).toBe(total);
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
          .locator(`[data-testid="group-row"][data-group="${group}"] [data-testid="dlq-depth"]`)
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
    // The button sits above the rows (not under up to 200 of them).
    await go(`/dlq?topic=${topic}`);
    const replayBox = await page.locator('[data-testid="replay-filter-form"]').boundingBox();
    const rowsBox = await page.locator('[data-testid="dlq-table"]').boundingBox();
    expect(replayBox!.y + replayBox!.height).toBeLessThanOrEqual(rowsBox!.y);
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

  it('every page renders without script errors (screenshots in .strand/console-shots)', async () => {
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
    await go(`/group?name=${encodeURIComponent(group)}`);
    await page
      .locator(`[data-testid="group"][data-group="${group}"] .uplot`)
      .first()
      .waitFor({ timeout: 20_000 });
    await page.screenshot({ path: `${SHOTS}/group.png`, fullPage: true });
    expect(pageErrors).toEqual([]);
  });

  it('the login page, and any answer before the login, shows nothing of the cluster', async () => {
    const { brokers } = stack();
    const leaks = (text: string) => brokers.filter((b) => text.includes(b));
    // The login page and the 401 a live refresh gets: no broker address, no navigation, no mode.
    const login = await fetch(`${main.url}/login`);
    const loginHtml = await login.text();
    expect(leaks(loginHtml)).toEqual([]);
    expect(loginHtml).not.toMatch(/href="\/(workers|dlq|controls)"/);
    const live = await fetch(`${main.url}/`, { headers: { 'x-strand-live': '1' } });
    expect(live.status).toBe(401);
    expect(leaks(await live.text())).toEqual([]);
    const visitor = await browser.newContext();
    try {
      const p = await visitor.newPage();
      await p.goto(`${main.url}/workers`);
      expect(new URL(p.url()).pathname).toBe('/login');
      expect(leaks(await p.content())).toEqual([]);
      expect(await p.locator('header nav').count()).toBe(0);
      await p.screenshot({ path: `${SHOTS}/login.png` });
    } finally {
      await visitor.close();
    }
  });

  it('a wrong bearer token gets 401 (not the login page); token guesses are throttled per address (429, Retry-After)', async () => {
    const { brokers } = stack();
    const leaks = (text: string) => brokers.filter((b) => text.includes(b));
    // Its own console: the guesses below must not lock the other tests' bearer requests out.
    const guarded = await startConsole(['--auth-token-file', tokenFile]);
    const guesser = await browser.newContext();
    try {
      const bearer = (t: string) =>
        fetch(`${guarded.url}/workers`, { headers: { authorization: `Bearer ${t}` }, redirect: 'manual' });
      const wrong = await bearer('not-the-token-not-the-token');
      expect(wrong.status).toBe(401);
      expect(wrong.headers.get('www-authenticate')).toMatch(/^Bearer /);
      expect(leaks(await wrong.text())).toEqual([]);
      expect((await bearer(token)).status).toBe(200);
      // Five wrong tokens in a row empty the address's bucket: then not even the right one is checked.
      for (let i = 0; i < 4; i++) expect((await bearer(`wrong-${i}-wrong-token`)).status).toBe(401);
      const blocked = await bearer(token);
      expect(blocked.status).toBe(429);
      const retryAfter = Number(blocked.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(10);
      // The login form shares the bucket (same address).
      const p = await guesser.newPage();
      await p.goto(`${guarded.url}/login`);
      await p.fill('input[name="token"]', token);
      const [answer] = await Promise.all([
        p.waitForResponse((r) => r.url().endsWith('/login') && r.request().method() === 'POST'),
        p.click('[data-testid="login-form"] button'),
      ]);
      expect(answer.status()).toBe(429);
      expect(await p.locator('.notice.error').textContent()).toMatch(
        /Too many wrong tokens: try again in \d+ s/,
      );
      // A session cookie is never throttled: the main console's browser session goes on.
      await go('/workers');
      expect(new URL(page.url()).pathname).toBe('/workers');
      // One more attempt once the bucket has refilled by one.
      await new Promise((r) => setTimeout(r, retryAfter * 1000 + 300));
      expect((await bearer(token)).status).toBe(200);
    } finally {
      await guesser.close();
      await stop(guarded.child);
    }
  });

  it('30 groups: the overview is a compact table with search, sort by lag / DLQ depth / age, and a click through to the group', async () => {
    const names = [
      'payments',
      'ledger',
      'invoices',
      'refunds',
      'payouts',
      'emails',
      'sms',
      'push',
      'orders',
      'shipments',
      'returns',
      'inventory',
      'pricing',
      'search-index',
      'thumbnails',
      'exports',
      'imports',
      'webhooks',
      'audit',
      'fraud-checks',
      'kyc',
      'statements',
      'reminders',
      'subscriptions',
      'usage',
      'billing',
      'tax',
      'reports',
      'backups',
      'notifications',
    ];
    const run = uniqueName('f').slice(2, 8);
    const fleet = names.map((name, i) => {
      const partitions = 1 + (i % 3);
      const records = 5 + ((i * 53) % 190);
      const ends = Array.from(
        { length: partitions },
        (_, p) => Math.floor(records / partitions) + (p < records % partitions ? 1 : 0),
      );
      return {
        group: `${name}-workers-${run}`,
        topic: `${name}-${run}`,
        partitions,
        ends,
        // Committed half way: the lag is the other half.
        lag: ends.reduce((a, e) => a + (e - Math.floor(e / 2)), 0),
        dead: i % 3 === 0 ? (i % 7) + 2 : 0,
      };
    });
    const dropTopics = await createTopics(
      fleet.flatMap((f) => [
        { topic: f.topic, numPartitions: f.partitions },
        { topic: `${f.topic}.dlq`, numPartitions: 1 },
      ]),
    );
    const kafka = createKafka(stack().connection);
    const admin = kafka.admin();
    // Idempotent: a batch kafkajs retries (topics a moment old) must not be written twice.
    const writer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await Promise.all([admin.connect(), writer.connect()]);
    let fleetConsole: Running | undefined;
    try {
      await writer.sendBatch({
        acks: -1,
        topicMessages: fleet.flatMap((f) => [
          {
            topic: f.topic,
            messages: f.ends.flatMap((e, partition) =>
              Array.from({ length: e }, (_, n) => ({ partition, key: `k${n}`, value: 'x' })),
            ),
          },
          ...(f.dead
            ? [{ topic: `${f.topic}.dlq`, messages: Array.from({ length: f.dead }, () => ({ value: 'x' })) }]
            : []),
        ]),
      });
      // kafkajs joins each group to set its offsets (seconds each): all at once.
      await Promise.all(
        fleet.map((f) =>
          admin.setOffsets({
            groupId: f.group,
            topic: f.topic,
            partitions: f.ends.map((e, partition) => ({ partition, offset: String(Math.floor(e / 2)) })),
          }),
        ),
      );
      fleetConsole = await startConsole(['--read-only', ...fleet.flatMap((f) => ['--group', f.group])]);
      const base = fleetConsole.url;
      const rowsShown = async () => {
        const out: { group: string; lag: number; dlq: number }[] = [];
        for (const row of await page.locator('[data-testid="group-row"]').all()) {
          const group = (await row.getAttribute('data-group')) ?? '';
          if (!group.endsWith(`-workers-${run}`)) continue;
          out.push({
            group,
            lag: Number((await row.locator('[data-testid="total-lag"]').textContent())?.replace(/,/g, '')),
            dlq: Number((await row.locator('[data-testid="dlq-depth"]').textContent())?.replace(/,/g, '')),
          });
        }
        return out;
      };
      const byName = (a: { group: string }, b: { group: string }) => a.group.localeCompare(b.group);
      const expected = fleet.map((f) => ({ group: f.group, lag: f.lag, dlq: f.dead })).sort(byName);
      let shown: { group: string; lag: number; dlq: number }[] = [];
      await waitUntil(
        async () => {
          await go('/', base);
          shown = await rowsShown();
          return JSON.stringify(shown) === JSON.stringify(expected);
        },
        { timeoutMs: 60_000, intervalMs: 1000, what: 'the 30 groups sampled' },
      ).catch(() => undefined);
      expect(shown).toEqual(expected);
      // One row per group: the whole page fits in a few screens (it was ~13,500 px of cards).
      const height = () =>
        page.evaluate(
          () =>
            (globalThis as unknown as { document: { documentElement: { scrollHeight: number } } }).document
              .documentElement.scrollHeight,
        );
      expect(await height()).toBeLessThan(2400);
      // Workers lists only groups with workers; Controls is a row per group; Retry tiers names the
      // groups without tiers in one line.
      await go('/workers', base);
      expect(await page.locator(`[data-testid="group-state"][data-group$="-workers-${run}"]`).count()).toBe(
        0,
      );
      await go('/controls', base);
      expect(await page.locator(`[data-testid="control"][data-group$="-workers-${run}"]`).count()).toBe(30);
      expect(await height()).toBeLessThan(2400);
      await go('/tiers', base);
      expect(await page.locator('[data-testid="no-tiers"] a').allTextContents()).toEqual(
        expect.arrayContaining(fleet.map((f) => f.group)),
      );
      expect(await height()).toBeLessThan(2400);
      // Each row's lag trend is drawn once it has two points (a sample every 5 s).
      await waitUntil(
        async () => {
          await go('/', base);
          return (await page.locator('[data-testid="group-row"] svg.spark').count()) >= fleet.length;
        },
        { timeoutMs: 30_000, intervalMs: 1000, what: 'the lag trends' },
      );
      await page.screenshot({ path: `${SHOTS}/overview-30-groups.png`, fullPage: true });

      // Sort by lag, by DLQ depth (largest first, then by name), by oldest pending age.
      await go(`/?q=${run}`, base);
      await page.locator('[data-testid="sort-lag"]').click();
      await page.waitForURL(/sort=lag/);
      expect((await rowsShown()).map((r) => r.group)).toEqual(
        [...expected].sort((a, b) => b.lag - a.lag || byName(a, b)).map((r) => r.group),
      );
      await page.locator('[data-testid="sort-dlq"]').click();
      await page.waitForURL(/sort=dlq/);
      expect((await rowsShown()).map((r) => r.group)).toEqual(
        [...expected].sort((a, b) => b.dlq - a.dlq || byName(a, b)).map((r) => r.group),
      );
      expect(new URL(page.url()).searchParams.get('q')).toBe(run);
      await page.locator('[data-testid="sort-age"]').click();
      await page.waitForURL(/sort=age/);
      // No worker reports for these groups: no pending age, so by name.
      expect((await rowsShown()).map((r) => r.group)).toEqual(expected.map((r) => r.group));
      const bad = await fetch(`${base}/?sort=size`);
      expect(bad.status).toBe(400);
      expect(await bad.text()).toContain('sort: expected one of name, lag, dlq, age');

      // Search: group or topic contains the text.
      await go('/', base);
      await page.fill('[data-testid="group-search"] input[name="q"]', `ledger-workers-${run}`);
      await page.press('[data-testid="group-search"] input[name="q"]', 'Enter');
      await page.waitForURL(/q=ledger/);
      expect((await rowsShown()).map((r) => r.group)).toEqual([`ledger-workers-${run}`]);

      // A click on a row opens the group's page: its partitions with their lag.
      const biggest = [...fleet].sort((a, b) => b.lag - a.lag)[0]!;
      await go(`/?q=${run}&sort=lag`, base);
      await page
        .locator(`[data-testid="group-row"][data-group="${biggest.group}"] [data-testid="group-state"]`)
        .click();
      await page.waitForURL(/\/group\?name=/);
      expect(new URL(page.url()).searchParams.get('name')).toBe(biggest.group);
      expect(await page.locator('[data-testid="lag-row"]').count()).toBe(biggest.partitions);
      expect(Number(await page.locator('[data-testid="total-lag"]').textContent())).toBe(biggest.lag);
      await page.screenshot({ path: `${SHOTS}/group-of-30.png`, fullPage: true });

      // A pinned group whose topic is deleted stays (it was asked for) with one quiet line, no error.
      const gone = fleet[1]!;
      await admin.deleteTopics({ topics: [gone.topic, `${gone.topic}.dlq`] });
      const goneRow = page.locator(`[data-testid="group-row"][data-group="${gone.group}"]`);
      await waitUntil(
        async () => {
          await go(`/?q=${run}`, base);
          return (await goneRow.locator('[data-testid="group-state"]').textContent()) === 'topic deleted';
        },
        { timeoutMs: 30_000, intervalMs: 1000, what: 'the pinned group to show its topic deleted' },
      );
      expect(await page.locator('.notice.error').count()).toBe(0);
      await go(`/group?name=${encodeURIComponent(gone.group)}`, base);
      expect(await page.locator('[data-testid="group-note"]').textContent()).toContain(
        `Topic ${gone.topic} was deleted`,
      );
      expect(await page.locator('.notice.error').count()).toBe(0);
    } finally {
      await stop(fleetConsole?.child);
      await writer.disconnect().catch(() => undefined);
      await admin.deleteGroups(fleet.map((f) => f.group)).catch(() => undefined);
      await admin.disconnect();
      await dropTopics();
    }
  });

  it('Jobs and Dead letters open on the topic with the latest activity, or ask which', async () => {
    const t = await jobTopic('console-gone', { partitions: 2, tierDelays: [TIER_MS] });
    second.topic = t.topic;
    second.cleanup = t.cleanup;
    second.group = uniqueName('console-gone-workers');
    second.worker = startWorker(second.topic, second.group, join(dir, 'ledger-2.txt'));
    second.producer = await paymentProducer(stack(), second.topic);
    // The first topic by name is the main one: opening on it would be the old behaviour.
    expect([topic, second.topic].sort()[0]).toBe(topic);
    const poke = () => second.producer!.enqueueMany([payment(null), payment('poison')]);
    const opensOn = async (path: string) => {
      await go(path);
      const line = page.locator('[data-testid="default-topic"]');
      return (await line.count()) ? line.getAttribute('data-topic') : undefined;
    };
    // Other groups on a shared stack may be busy too: keep this one busy while looking.
    for (const path of ['/jobs', '/dlq'])
      await waitUntil(
        async () => {
          await poke();
          return (await opensOn(path)) === second.topic;
        },
        { timeoutMs: 60_000, intervalMs: 1000, what: `${path} to open on ${second.topic}` },
      );
    expect(await page.locator('[data-testid="dead-row"]').count()).toBeGreaterThan(0);
    // Other files' groups on the shared stack may have been busier a moment later: look again while busy.
    await waitUntil(
      async () => {
        await poke();
        if ((await opensOn('/jobs')) !== second.topic) return false;
        return (await page.locator('input[name="topic"]').first().inputValue()) === second.topic;
      },
      { timeoutMs: 60_000, intervalMs: 1000, what: `/jobs to open on ${second.topic} again` },
    );
    expect(await page.locator('[data-testid="record"]').count()).toBeGreaterThan(0);
    // "All topics" asks which, the busiest first.
    await page.locator('[data-testid="default-topic"] a').click();
    await page.waitForURL(/choose=1/);
    const choices = await page
      .locator('[data-testid="topic-choice"]')
      .evaluateAll((rows) => rows.map((r) => r.getAttribute('data-topic')));
    expect(choices).toContain(topic);
    expect(choices).toContain(second.topic);
    await page.locator(`[data-testid="topic-choice"][data-topic="${topic}"] a`).click();
    expect(new URL(page.url()).searchParams.get('topic')).toBe(topic);
  });

  it('a killed worker is shown as stopped (one state, never running)', async () => {
    const row = page.locator('tr[data-testid="worker-row"]', { hasText: second.group });
    await waitUntil(
      async () => {
        await go('/workers');
        return (await row.count()) === 1 && (await row.getAttribute('data-state')) === 'running';
      },
      { timeoutMs: 60_000, intervalMs: 1000, what: 'the second worker to report running' },
    );
    second.workerId = (await row.getAttribute('data-worker')) ?? undefined;
    await stop(second.worker, 'SIGKILL');
    // Its last snapshot said running; silent for 15 s, it is stopped.
    await waitUntil(
      async () => {
        await go('/workers');
        return (await row.getAttribute('data-state')) === 'stopped';
      },
      { timeoutMs: 45_000, intervalMs: 1000, what: 'the killed worker to show as stopped' },
    );
    expect(await row.locator('.badge').allTextContents()).toEqual(['stopped']);
    expect(await row.textContent()).not.toContain('running');
    await page.screenshot({ path: `${SHOTS}/workers-stopped.png`, fullPage: true });
    await go('/');
    const overviewRow = page.locator(`[data-testid="group-row"][data-group="${second.group}"]`);
    expect(await overviewRow.locator('[data-testid="group-state"]').textContent()).toBe('no live workers');
    expect(await overviewRow.locator('[data-testid="workers-alive"]').textContent()).toBe('0');
    expect(await overviewRow.locator('[data-testid="workers-stopped"]').textContent()).toBe('+1 stopped');
    await go(`/group?name=${encodeURIComponent(second.group)}`);
    expect(await page.locator('[data-testid="worker-row"]').getAttribute('data-state')).toBe('stopped');
  });

  it('a group whose topic was deleted leaves the overview, with no "sampling failed" box', async () => {
    await second.cleanup!();
    second.cleanup = undefined;
    const rowOf = () => page.locator(`[data-testid="group-row"][data-group="${second.group}"]`);
    const texts: string[] = [];
    await waitUntil(
      async () => {
        await go('/');
        texts.push((await page.locator('main').textContent()) ?? '');
        return (await rowOf().count()) === 0;
      },
      { timeoutMs: 30_000, intervalMs: 500, what: 'the group of the deleted topic to leave the overview' },
    );
    // Two more samples: it stays away, and no page ever showed a failure box for it.
    for (const end = Date.now() + 11_000; Date.now() < end; ) {
      await go('/');
      texts.push((await page.locator('main').textContent()) ?? '');
      expect(await rowOf().count()).toBe(0);
      await new Promise((r) => setTimeout(r, 1000));
    }
    expect(texts.filter((t) => /sampling failed|does not exist/.test(t))).toEqual([]);
    expect(await page.locator('.notice.error').count()).toBe(0);
    const gone = await fetch(`${main.url}/group?name=${encodeURIComponent(second.group)}`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(gone.status).toBe(404);
  });
});
