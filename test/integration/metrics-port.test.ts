import { createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/observability/logger.js';
import { Worker } from '../../src/worker/worker.js';
import { runCli } from '../support/cli.js';
import { jobTopic, stack, uniqueName } from '../support/helpers.js';

// A metrics port another process holds: the error says it is the metrics port and which option
// sets it, in one line, instead of Node's bare "listen EADDRINUSE … 0.0.0.0:9470".

let taken: Server;
let port = 0;
beforeAll(async () => {
  taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '0.0.0.0', resolve));
  port = (taken.address() as { port: number }).port;
});
afterAll(() => new Promise<void>((resolve) => taken.close(() => resolve())));

describe('a metrics port already in use', () => {
  it('Worker.start() names metrics.port', async () => {
    const { topic, cleanup } = await jobTopic('metrics-port', { partitions: 1 });
    const worker = new Worker({
      brokers: stack().brokers,
      registry: { url: stack().registryUrl },
      topic,
      groupId: uniqueName('metrics-port'),
      retry: { tiers: [] },
      status: false,
      metrics: { port },
      logger: createLogger({ level: 'silent' }),
      handler: async () => undefined,
    });
    const error = await worker.start().then(
      () => undefined,
      (e: unknown) => e as Error & { path?: string },
    );
    await worker.stop();
    expect(error?.name).toBe('ConfigError');
    expect(error?.path).toBe('metrics.port');
    expect(error?.message).toBe(
      `metrics.port: port ${port} on 0.0.0.0 is already in use; it serves this process's /metrics, /healthz and /readyz: set metrics.port to a free port (0 picks one)`,
    );
    await cleanup();
  });

  it('strand exporter names --port (exit 2, one line)', async () => {
    const { topic, cleanup } = await jobTopic('metrics-port-exporter', { partitions: 1 });
    const r = await runCli([
      'exporter',
      '--group',
      uniqueName('g'),
      '--topic',
      topic,
      '--port',
      String(port),
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      `strand: --port: port ${port} on 0.0.0.0 is already in use; it serves this process's /metrics, /healthz and /readyz: set --port to a free port (0 picks one)\n`,
    );
    await cleanup();
  });
});
