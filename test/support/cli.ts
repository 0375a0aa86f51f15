import { spawn } from 'node:child_process';
import { stack } from './helpers.js';

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface NodeResult {
  /** Exit code; null when killed. */
  code: number | null;
  stdout: string;
  stderr: string;
  /** False when it was still running at the deadline (then killed). */
  ended: boolean;
}

/** Runs `node <args>` to its end, or kills it at `timeoutMs` (then `ended` is false). */
export function runNode(
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {},
): Promise<NodeResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, {
      ...(opts.cwd ? { cwd: opts.cwd } : {}),
      env: opts.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let ended = true;
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      ended = false;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ended });
    });
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs the built `strand` CLI (dist/, built by `pretest`) against the test stack. */
export async function runCli(
  args: string[],
  opts: { input?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<CliResult> {
  const { brokers, registryUrl } = stack();
  const r = await runNode(['dist/cli/main.js', ...args], {
    env: {
      ...process.env,
      STRAND_BROKERS: brokers.join(','),
      STRAND_REGISTRY_URL: registryUrl,
      NO_COLOR: '1',
      ...opts.env,
    },
    ...(opts.input !== undefined ? { input: opts.input } : {}),
    ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
  });
  return { code: r.code ?? -1, stdout: r.stdout, stderr: r.stderr };
}
