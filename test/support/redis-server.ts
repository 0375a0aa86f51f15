import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import type { TestProject } from 'vitest/node';
import { freePort } from './ports.js';
import { reachable } from './reachable.js';

export interface LocalRedis {
  port: number;
  stop(): Promise<void>;
}

function onPath(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

/** Starts `redis-server` on a free loopback port, in memory only; `stop` ends it. */
export async function startRedisServer(): Promise<LocalRedis> {
  const port = await freePort();
  const child: ChildProcess = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 10_000;
  while (!(await reachable('127.0.0.1', port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`redis-server did not start on 127.0.0.1:${port}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    port,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}

/**
 * The Redis the idempotency tests use: `STRAND_TEST_REDIS_PORT` or 6379 on 127.0.0.1 when
 * something answers there, else a `redis-server` from the PATH started for this run (and stopped
 * after it), else none, with the one-line reason those tests are skipped for.
 */
export async function provideRedis(project: TestProject): Promise<LocalRedis | undefined> {
  const port = Number(process.env.STRAND_TEST_REDIS_PORT ?? 6379);
  if (await reachable('127.0.0.1', port)) {
    project.provide('redis', { host: '127.0.0.1', port });
    return undefined;
  }
  if (onPath('redis-server')) {
    const started = await startRedisServer();
    process.stderr.write(`[redis] started redis-server on 127.0.0.1:${started.port} for this run\n`);
    project.provide('redis', { host: '127.0.0.1', port: started.port });
    return started;
  }
  const missing = `no Redis at 127.0.0.1:${port} and no redis-server on the PATH (apt-get install redis-server)`;
  project.provide('redis', { missing });
  process.stderr.write(`[redis] the tests that need Redis are skipped: ${missing}\n`);
  return undefined;
}
