import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HEADERS } from '../../src/headers.js';
import { jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { enqueuePayments } from '../support/jobs.js';
import { rawConsume } from '../support/raw-kafka.js';

// `strand worker x.ts` as a user runs it: a module in a project of its own that imports 'strand'
// (here a link to this checkout), compiled by tsx. A handler's stack must name the user's file and
// the real lines, and every file it names must exist.

const WORKER = `import { defineWorker, NonRetriableError } from 'strand';

interface Payment {
  paymentId: string;
}

function charge(payment: Payment): never {
  throw new NonRetriableError(\`card declined for \${payment.paymentId}\`);
}

export default defineWorker<Payment>({
  topic: process.env.TEST_TOPIC ?? '',
  groupId: process.env.TEST_GROUP ?? '',
  retry: { tiers: [] },
  handler: async (job) => {
    charge(job.data);
  },
});
`;

/** 1-based line of the first line of `source` containing `text`. */
const lineOf = (source: string, text: string) => source.split('\n').findIndex((l) => l.includes(text)) + 1;

let worker: ChildProcess | undefined;
let dir: string | undefined;
afterEach(() => {
  worker?.kill('SIGKILL');
  worker = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

describe('stack traces of a worker module', () => {
  it("a handler's error names the user's .ts file and its real lines; every file it names exists", async () => {
    const { topic, cleanup } = await jobTopic('stack-trace', { partitions: 1 });
    dir = mkdtempSync(join(tmpdir(), 'strand-user-'));
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'user-app', type: 'module' }));
    mkdirSync(join(dir, 'node_modules'));
    symlinkSync(process.cwd(), join(dir, 'node_modules', 'strand'));
    const file = join(dir, 'payment-worker.ts');
    writeFileSync(file, WORKER);
    await enqueuePayments(topic, 1, 1);
    let output = '';
    worker = spawn(process.execPath, ['dist/cli/main.js', 'worker', file], {
      env: {
        ...process.env,
        STRAND_BROKERS: stack().brokers.join(','),
        STRAND_REGISTRY_URL: stack().registryUrl,
        STRAND_LOG_LEVEL: 'error',
        STRAND_STATUS: 'off',
        TEST_TOPIC: topic,
        TEST_GROUP: uniqueName('stack-trace'),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    worker.stdout?.on('data', (d) => (output += d));
    worker.stderr?.on('data', (d) => (output += d));
    const [dead] = await waitUntil(
      async () => {
        const records = await rawConsume(stack().brokers, `${topic}.dlq`, 1, { timeoutMs: 5000 });
        return records.length > 0 ? records : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 500, what: `the dead job (worker output: ${output.slice(-500)})` },
    );
    const trace = dead!.headers[HEADERS.errorStack] ?? '';
    console.info(`dead job's stack:\n${trace}`);
    expect(trace).toMatch(/^NonRetriableError: card declined for /);
    expect(trace).not.toContain('tsx-namespace');
    const frames = trace.split('\n').slice(1);
    expect(frames[0]).toContain(`at charge (${file}:${lineOf(WORKER, 'throw new NonRetriableError')}:`);
    expect(frames[1]).toContain(`(${file}:${lineOf(WORKER, 'charge(job.data)')}:`);
    const named = frames
      .map((f) => /(?:\(|^at )((?:file:\/\/)?\/[^():]+):\d+:\d+\)?$/.exec(f.trim())?.[1])
      .filter((p): p is string => p !== undefined);
    expect(named.length).toBeGreaterThan(2);
    expect(named.filter((p) => !existsSync(p.replace(/^file:\/\//, '')))).toEqual([]);
    await cleanup();
  });

  it("the package ships every file its source maps name (Strand's frames in a user's source-mapped stack)", () => {
    // What `npm pack` would put in the tarball (no build: dist/ is the one `npm test` built).
    const [pack] = JSON.parse(
      execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { encoding: 'utf8' }),
    ) as [{ files: { path: string }[] }];
    const shipped = new Set(pack.files.map((f) => f.path));
    const maps = [...shipped].filter((p) => p.endsWith('.js.map'));
    expect(maps.length).toBeGreaterThan(50);
    const missing = maps.flatMap((map) => {
      const { sources } = JSON.parse(readFileSync(map, 'utf8')) as { sources: string[] };
      return sources.map((s) => join(dirname(map), s)).filter((source) => !shipped.has(source));
    });
    expect(missing).toEqual([]);
  });
});
