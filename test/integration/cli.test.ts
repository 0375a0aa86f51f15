import { describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { cleanUpAfterFile } from '../support/helpers.js';

const commands = [
  ['dev'],
  ['dev', 'up'],
  ['dev', 'down'],
  ['dev', 'status'],
  ['topics', 'create'],
  ['enqueue'],
  ['worker'],
  ['lag'],
  ['exporter'],
  ['dlq', 'list'],
  ['dlq', 'replay'],
  ['demo'],
];

const bad: [string[], RegExp][] = [
  [['dev', 'up', '--brokers', 'x'], /^strand: option '--brokers <n>' argument 'x' is invalid/],
  [['dev', 'status', '--bogus'], /^strand: unknown option '--bogus'/],
  [['topics', 'create'], /^strand: missing required argument 'topic'/],
  [['enqueue', 't'], /^strand: required option '--schema <file.avsc>' not specified/],
  [['worker', 'nope.ts'], /^strand: <module>: nope.ts not found/],
  [['worker', 'package.json'], /^strand: <module>: package.json is not a JavaScript or TypeScript module/],
  [
    ['worker', 'test/support/helpers.ts'],
    /^strand: <module>: test\/support\/helpers.ts must default-export defineWorker\(\{...\}\)\n$/,
  ],
  [['lag'], /^strand: required option '--group <id>' not specified/],
  [['exporter', '--group', 'g', '--port', 'x'], /^strand: option '--port <port>' argument 'x' is invalid/],
  [['dlq', 'list'], /^strand: missing required argument 'topic'/],
  [['dlq', 'replay', 't', '--since', 'blah'], /^strand: --since: expected an ISO time/],
  [['demo', '--jobs', '1'], /^strand: option '--jobs <n>' argument '1' is invalid/],
  [['nosuch'], /^strand: unknown command 'nosuch'/],
];

describe('strand CLI', () => {
  it.each(commands)('%s %s --help exits 0 with usage and examples', async (...cmd) => {
    const r = await runCli([...cmd.filter(Boolean), '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: strand /);
    if (cmd.length > 1 || ['enqueue', 'worker', 'lag', 'exporter', 'demo'].includes(cmd[0]!))
      expect(r.stdout).toMatch(/Examples?:/);
  });

  it.each(bad)('%j fails with exit 2 and one line', async (args, message) => {
    const r = await runCli(args);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
  });

  it('an unreachable broker is a one-line runtime error (exit 1) within seconds', async () => {
    const t0 = Date.now();
    const r = await runCli(['lag', '--group', 'g', '--topic', 't', '--brokers', '127.0.0.1:1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(
      'strand: cannot reach Kafka (connect ECONNREFUSED 127.0.0.1:1); check --brokers or STRAND_BROKERS\n',
    );
    expect(Date.now() - t0).toBeLessThan(15_000);
  });

  it('a worker with an unreachable broker fails as fast as the other commands, with the same line', async () => {
    const lag = await timed(['lag', '--group', 'g', '--topic', 't', '--brokers', '127.0.0.1:1']);
    const worker = await timed(['worker', 'examples/payment-worker.ts', '--brokers', '127.0.0.1:1']);
    console.info(`unreachable broker: lag ${lag.ms} ms, worker ${worker.ms} ms`);
    expect(worker.code).toBe(1);
    expect(worker.stderr).toBe(lag.stderr);
    expect(worker.ms).toBeLessThan(lag.ms + 8000);
  });

  it('strand demo runs the workload to a summary with 0 order violations and the expected DLQ count', async () => {
    const r = await runCli(['demo', '--jobs', '1200', '--keys', '80', '--json'], { timeoutMs: 170_000 });
    const made = /"topic":\s*"(demo-payments-[a-z0-9]+)"/.exec(r.stdout)?.[1];
    if (made) cleanUpAfterFile(made); // its topics, group and subject: the demo keeps them for a look
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as Record<string, unknown> & {
      latencyMs: { p50: number; p99: number };
      retriesPerTier: Record<string, number>;
    };
    expect(s.ok).toBe(true);
    expect(s.completed).toBe(s.expectedCompleted);
    expect(s.completed).toBe(1200 - 2); // payments 250 and 750 are declined
    expect(s.deadLettered).toBe(3); // 2 declined + 1 poison record
    expect(s.orderViolations).toBe(0);
    expect(s.duplicatesSuppressed).toBe(s.expectedDuplicates);
    expect(s.retriesPerTier.tier1).toBeGreaterThan(0);
    expect(s.retriesPerTier.tier2).toBeGreaterThan(0);
    expect(s.latencyMs.p99).toBeGreaterThanOrEqual(s.latencyMs.p50);
  }, 180_000);
});

async function timed(args: string[]): Promise<{ code: number; stderr: string; ms: number }> {
  const t0 = Date.now();
  const r = await runCli(args);
  return { code: r.code, stderr: r.stderr, ms: Date.now() - t0 };
}
