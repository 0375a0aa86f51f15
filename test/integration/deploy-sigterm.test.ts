import { type ChildProcess, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { committedOffsets, jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { enqueuePayments } from '../support/jobs.js';

/**
 * The worker Deployment's own command line, run the way Kubernetes runs it: as the container's main
 * process (PID 1 there), which alone receives the kubelet's SIGTERM. The worker must hear it and stop
 * gracefully: finish the running job, commit, leave the group, log "worker stopped", exit 0.
 *
 * The image is mapped onto this repository: its working directory is a temporary app directory
 * with `node_modules/strand` → this repository (so `node_modules/strand/dist/cli/main.js` is the
 * built CLI, and `import 'strand'` is `dist/index.js`) and the app's `dist/worker.js`, a small
 * worker module. Nothing in the command line is rewritten.
 */

interface Container {
  command?: string[];
  args?: string[];
  env?: { name: string; value?: string; valueFrom?: unknown }[];
}

const deployment = parseAllDocuments(
  readFileSync('deploy/kubernetes/worker-deployment.yaml', 'utf8'),
)[0]!.toJS() as {
  spec: { template: { spec: { terminationGracePeriodSeconds: number; containers: Container[] } } };
};
const container = deployment.spec.template.spec.containers[0]!;

const WORKER_MODULE = `
import { appendFileSync } from 'node:fs';
import { defineWorker } from 'strand';

const ledger = process.env.SIGTERM_TEST_LEDGER;

export default defineWorker({
  topic: process.env.SIGTERM_TEST_TOPIC,
  groupId: process.env.SIGTERM_TEST_GROUP,
  concurrency: 1,
  retry: { tiers: [] },
  commitIntervalMs: 200,
  shutdownTimeoutMs: 10000,
  handler: async (job) => {
    appendFileSync(ledger, 'S ' + job.id + '\\n');
    await new Promise((r) => setTimeout(r, 300));
    appendFileSync(ledger, 'C ' + job.id + '\\n');
  },
});
`;

/** The image's working directory: package.json, node_modules/strand (this repo), dist/worker.js. */
function makeApp(): string {
  const app = realpathSync(mkdtempSync(join(tmpdir(), 'strand-image-')));
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'payments-worker', type: 'module' }));
  mkdirSync(join(app, 'node_modules', '.bin'), { recursive: true });
  symlinkSync(resolve('.'), join(app, 'node_modules', 'strand'), 'dir');
  symlinkSync('../strand/dist/cli/main.js', join(app, 'node_modules', '.bin', 'strand'));
  mkdirSync(join(app, 'dist'));
  writeFileSync(join(app, 'dist', 'worker.js'), WORKER_MODULE);
  return app;
}

/** Processes whose working directory is `dir`: whatever the command started, orphans included. */
function processesIn(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readlinkSync(`/proc/${entry}/cwd`) === dir) pids.push(Number(entry));
    } catch {
      // gone, or not ours to read
    }
  }
  return pids;
}

const apps: string[] = [];
const children: ChildProcess[] = [];
afterEach(() => {
  // Everything this test started, by pid: the main process and anything left in the app directory.
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const app of apps.splice(0)) {
    for (const pid of processesIn(app)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(app, { recursive: true, force: true });
  }
});

describe('the worker Deployment under SIGTERM', () => {
  it('its command line starts the worker so that SIGTERM to the main process stops it gracefully', async () => {
    const argv = [...(container.command ?? []), ...(container.args ?? [])];
    expect(argv.length).toBeGreaterThan(0);
    expect(existsSync('dist/cli/main.js'), 'dist/ is built (npm run build)').toBe(true);
    const { topic, cleanup } = await jobTopic('sigterm', { partitions: 1 });
    await enqueuePayments(topic, 40, 4);
    const app = makeApp();
    apps.push(app);
    const ledger = join(app, 'ledger.txt');
    const groupId = uniqueName('sigterm-g');

    // The Deployment's environment, with the local stack in place of the cluster's addresses and
    // without the values that come from secrets.
    const env: Record<string, string> = {};
    for (const e of container.env ?? []) if (e.value !== undefined) env[e.name] = e.value;
    Object.assign(env, {
      STRAND_BROKERS: stack().brokers.join(','),
      STRAND_REGISTRY_URL: stack().registryUrl,
      SIGTERM_TEST_TOPIC: topic,
      SIGTERM_TEST_GROUP: groupId,
      SIGTERM_TEST_LEDGER: ledger,
    });
    const [cmd, ...rest] = argv as [string, ...string[]];
    const main = spawn(cmd === 'node' ? process.execPath : cmd, rest, {
      cwd: app,
      env: {
        ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('STRAND_'))),
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(main);
    let logs = '';
    main.stdout.on('data', (d) => (logs += d));
    main.stderr.on('data', (d) => (logs += d));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((done) =>
      main.once('exit', (code, signal) => done({ code, signal, at: Date.now() })),
    );
    const lines = (kind: 'S' | 'C') =>
      existsSync(ledger)
        ? readFileSync(ledger, 'utf8')
            .split('\n')
            .filter((l) => l.startsWith(`${kind} `))
        : [];

    await waitUntil(
      () => {
        if (main.exitCode !== null)
          throw new Error(`the worker exited ${main.exitCode}: ${logs.slice(-2000)}`);
        return lines('S').length >= 3;
      },
      { timeoutMs: 60_000, what: 'the worker running jobs' },
    );
    // What the kubelet does: SIGTERM to the container's main process only.
    const sentAt = Date.now();
    main.kill('SIGTERM');
    const bound = Math.min(20_000, deployment.spec.template.spec.terminationGracePeriodSeconds * 1000);
    const outcome = await Promise.race([exited, new Promise<null>((r) => setTimeout(() => r(null), bound))]);
    const leftovers = processesIn(app);
    console.info(
      `SIGTERM → ${outcome ? `exit ${outcome.code ?? outcome.signal} after ${outcome.at - sentAt} ms` : `no exit within ${bound} ms`}; ` +
        `${lines('S').length} started, ${lines('C').length} completed; processes left: ${leftovers.length}`,
    );
    expect(outcome, `exits within ${bound} ms`).not.toBeNull();
    expect(outcome!.code).toBe(0);
    expect(logs).toContain('worker stopped');
    // Nothing outlives the main process (under npx the real worker would be left behind, orphaned).
    expect(leftovers).toEqual([]);
    // Graceful: the running job finished and was committed; nothing started after the signal.
    const completed = lines('C').length;
    expect(lines('S').length).toBe(completed);
    expect(completed).toBeLessThan(40);
    expect((await committedOffsets(groupId, topic)).get(0)).toBe(completed);
    await cleanup();
  });
});
