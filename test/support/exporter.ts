import { spawn } from 'node:child_process';
import { stack, waitUntil } from './helpers.js';

/** The value of the first sample of `name` whose labels include `labels`, in a /metrics text. */
export function gauge(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`)) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`)))
      return Number(line.split(' ').pop());
  }
  return undefined;
}

/**
 * `strand exporter` (the built CLI) on a free port of 127.0.0.1 against the test stack, with `args`
 * (`--group`, `--topic`, …); resolves once it serves, with its /metrics URL and a way to kill it.
 */
export async function startExporter(args: string[]): Promise<{ metricsUrl: string; kill: () => void }> {
  const child = spawn(
    process.execPath,
    ['dist/cli/main.js', 'exporter', ...args, '--port', '0', '--host', '127.0.0.1'],
    { env: { ...process.env, STRAND_BROKERS: stack().brokers.join(',') }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const kill = () => void child.kill('SIGKILL');
  try {
    const base = await waitUntil(
      () => {
        if (child.exitCode !== null) throw new Error(`exporter exited ${child.exitCode}: ${err.trim()}`);
        return /(http:\/\/\S+)\/metrics/.exec(out)?.[1];
      },
      { timeoutMs: 20_000, what: 'exporter URL' },
    );
    return { metricsUrl: `${base}/metrics`, kill };
  } catch (error) {
    kill();
    throw error;
  }
}
