/**
 * `npm run test:compat`: the integration suite's core slice against each Kafka release, each on a
 * stack of its own (started with `kafkaVersion`, stopped before the next), and the unit suite with
 * the simulation on each Node major (from the npm `node` package, `npx -y -p node@N`). The results
 * go into the table of docs/compatibility.md (a row per version, replaced when run again).
 *
 *   npm run test:compat                          # everything (about 30 min here)
 *   npm run test:compat -- --kafka 4.4.0 --node none
 *   npm run test:compat -- --kafka none --node 22,24
 *
 * Exit code 1 when any run has a failed test (or could not run), 0 otherwise.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { machine } from '../../bench/env.js';
import { stackDown, stackHome, stackStatus, stackUp } from '../../src/devstack/index.js';

/** Kafka releases checked: the last 3.x line, the previous default's line, the newest (the default). */
export const COMPAT_KAFKA = ['3.9.2', '4.1.2', '4.4.0'];
export const COMPAT_NODE = ['20', '22', '24'];
/**
 * The core slice: the worker, failures and retry tiers, strict order, delays, idempotency, lag,
 * DLQ replay, and the SASL/TLS listeners (clients' security against this broker's version).
 */
export const CORE_SLICE = [
  'test/integration/worker-inprocess.test.ts',
  'test/integration/failure.test.ts',
  'test/integration/retry-later-delay.test.ts',
  'test/integration/strict-order.test.ts',
  'test/integration/delayed.test.ts',
  'test/integration/idempotency.test.ts',
  'test/integration/lag-due.test.ts',
  'test/integration/lag-offset-map.test.ts',
  'test/integration/dlq-replay-cli.test.ts',
  'test/integration/security.test.ts',
];

const DOC = 'docs/compatibility.md';
const BEGIN = '<!-- compat:begin (npm run test:compat writes this table) -->';
const END = '<!-- compat:end -->';

interface Row {
  target: 'Kafka' | 'Node';
  version: string;
  what: string;
  passed: number;
  failed: number;
  skipped: number;
  seconds: number;
  commit: string;
  date: string;
}

const list = (v: string | undefined, all: string[]) =>
  v === undefined ? all : v === 'none' ? [] : v.split(',').map((x) => x.trim());
const { values } = parseArgs({
  options: { kafka: { type: 'string' }, node: { type: 'string' }, 'no-write': { type: 'boolean' } },
});
const kafkaVersions = list(values.kafka, COMPAT_KAFKA);
const nodeVersions = list(values.node, COMPAT_NODE);
const m = machine();
const commit = `${m.commit}${m.dirty ? '+' : ''}`;
const outDir = join(stackHome(), 'compat');
mkdirSync(outDir, { recursive: true });

/** Counts from vitest's JSON report; a file that failed outside its tests counts as one failure. */
function counts(file: string): { passed: number; failed: number; skipped: number } {
  if (!existsSync(file)) return { passed: 0, failed: 1, skipped: 0 };
  const r = JSON.parse(readFileSync(file, 'utf8')) as {
    numPassedTests: number;
    numFailedTests: number;
    numPendingTests: number;
    numTodoTests: number;
    testResults?: { status: string; assertionResults?: { status: string }[] }[];
  };
  const fileFailures = (r.testResults ?? []).filter(
    (f) => f.status === 'failed' && !(f.assertionResults ?? []).some((a) => a.status === 'failed'),
  ).length;
  return {
    passed: r.numPassedTests,
    failed: r.numFailedTests + fileFailures,
    skipped: r.numPendingTests + r.numTodoTests,
  };
}

/** Runs vitest with `node` (a path or a command prefix) and returns its counts. */
function vitest(prefix: string[], args: string[], report: string, env: NodeJS.ProcessEnv) {
  rmSync(report, { force: true });
  const cmd = [
    ...prefix,
    'node_modules/vitest/vitest.mjs',
    'run',
    ...args,
    '--reporter=default',
    '--reporter=json',
    `--outputFile.json=${report}`,
  ];
  console.error(`$ ${cmd.join(' ')}`);
  spawnSync(cmd[0]!, cmd.slice(1), { stdio: 'inherit', env: { ...process.env, ...env } });
  return counts(report);
}

const rows: Row[] = [];
const row = (r: Omit<Row, 'commit' | 'date'>) => {
  const full = { ...r, commit, date: new Date().toISOString().slice(0, 10) };
  rows.push(full);
  console.error(
    `▶ ${r.target} ${r.version}: ${r.passed} passed, ${r.failed} failed, ${r.skipped} skipped in ${r.seconds}s`,
  );
};

for (const version of kafkaVersions) {
  if (stackStatus()?.alive.some(Boolean)) {
    console.error(`a stack runs in ${stackHome()}: stop it ("strand dev down") before npm run test:compat`);
    process.exit(2);
  }
  const t0 = Date.now();
  const what = `integration core slice (${CORE_SLICE.length} files)`;
  try {
    const { info } = await stackUp({
      kafkaVersion: version,
      onProgress: (line) => console.error(`[devstack ${version}] ${line}`),
    });
    // The broker's own word for its version, not only what the stack was asked for.
    const log = readFileSync(info.processes[0]!.log, 'utf8');
    const said = /Kafka version: (\S+)/.exec(log)?.[1];
    if (said !== version)
      throw new Error(`the broker reports Kafka version ${said ?? '(none)'}, not ${version}`);
    const c = vitest(
      [process.execPath],
      ['--project', 'integration', ...CORE_SLICE],
      join(outDir, `kafka-${version}.json`),
      // The harness's stackUp() then checks that the stack that runs is this version.
      { STRAND_KAFKA_VERSION: version },
    );
    row({ target: 'Kafka', version, what, ...c, seconds: Math.round((Date.now() - t0) / 1000) });
  } catch (error) {
    console.error(`Kafka ${version}: ${(error as Error).message}`);
    row({
      target: 'Kafka',
      version,
      what: `${what}: ${(error as Error).message.split('\n')[0]}`,
      passed: 0,
      failed: 1,
      skipped: 0,
      seconds: Math.round((Date.now() - t0) / 1000),
    });
  } finally {
    await stackDown();
  }
}

for (const major of nodeVersions) {
  const t0 = Date.now();
  const prefix = ['npx', '-y', '-p', `node@${major}`, 'node'];
  const v = spawnSync(prefix[0]!, [...prefix.slice(1), '--version'], { encoding: 'utf8' });
  const exact = v.stdout.trim().replace(/^v/, '');
  if (v.status !== 0 || !exact.startsWith(`${major}.`)) {
    row({
      target: 'Node',
      version: major,
      what: `unit suite + simulation: node@${major} did not run (${(v.stderr || v.stdout).trim().split('\n')[0]})`,
      passed: 0,
      failed: 1,
      skipped: 0,
      seconds: 0,
    });
    continue;
  }
  const c = vitest(prefix, ['--project', 'unit'], join(outDir, `node-${major}.json`), {});
  row({
    target: 'Node',
    version: exact,
    what: 'unit suite + simulation (pinned + 2,000 seeds)',
    ...c,
    seconds: Math.round((Date.now() - t0) / 1000),
  });
}

/** Replaces this run's rows in the table of docs/compatibility.md and keeps the others. */
function writeTable(): void {
  const doc = readFileSync(DOC, 'utf8');
  const start = doc.indexOf(BEGIN);
  const end = doc.indexOf(END);
  if (start < 0 || end < start) throw new Error(`${DOC} has no ${BEGIN} … ${END} block`);
  const header = [
    'Target',
    'Version',
    'What ran',
    'Passed',
    'Failed',
    'Skipped',
    'Seconds',
    'Commit',
    'Date',
  ];
  const key = (target: string, version: string) =>
    `${target} ${version.split('.')[0]}.${version.split('.')[1]}`;
  const old = doc
    .slice(start + BEGIN.length, end)
    .split('\n')
    .filter((l) => l.startsWith('|'))
    .slice(2)
    .map((l) =>
      l
        .split('|')
        .slice(1, -1)
        .map((c) => c.trim()),
    );
  const mine = new Set(
    rows.map((r) => (r.target === 'Node' ? `Node ${r.version.split('.')[0]}` : key(r.target, r.version))),
  );
  const kept = old.filter(
    (c) => !mine.has(c[0] === 'Node' ? `Node ${c[1]!.split('.')[0]}` : key(c[0]!, c[1]!)),
  );
  const fresh = rows.map((r) =>
    [r.target, r.version, r.what, r.passed, r.failed, r.skipped, r.seconds, r.commit, r.date].map(String),
  );
  const order = (c: string[]) =>
    `${c[0]} ${c[1]!
      .split('.')
      .map((x) => x.padStart(4, '0'))
      .join('.')}`;
  const all = [...kept, ...fresh].sort((a, b) => order(a).localeCompare(order(b)));
  const widths = header.map((h, i) => Math.max(h.length, ...all.map((c) => c[i]!.length)));
  const line = (c: string[]) => `| ${c.map((x, i) => x.padEnd(widths[i]!)).join(' | ')} |`;
  const table = [line(header), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...all.map(line)];
  writeFileSync(DOC, `${doc.slice(0, start + BEGIN.length)}\n${table.join('\n')}\n${doc.slice(end)}`);
}

if (!values['no-write'] && rows.length) writeTable();
const failed = rows.some((r) => r.failed > 0);
console.error(failed ? 'test:compat: some runs failed (see above)' : 'test:compat: every run passed');
process.exit(failed ? 1 : 0);
