import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Command } from 'commander';
import { ConfigError } from '../config/index.js';
import { createLogger } from '../observability/logger.js';
import { isWorkerDefinition, type WorkerOptions } from '../worker/options.js';
import { Worker } from '../worker/worker.js';
import { action, EXIT } from './common.js';
import { type ConnectionFlags, resolveConnection, withConnectionFlags } from './connection.js';

async function loadDefinition(modulePath: string): Promise<unknown> {
  const file = resolve(modulePath);
  if (!existsSync(file)) throw new ConfigError('<module>', `${modulePath} not found`);
  const url = pathToFileURL(file).href;
  let mod: { default?: unknown };
  try {
    if (/\.(c|m)?tsx?$/.test(file)) {
      // TypeScript modules load through tsx's ESM loader, scoped to this import.
      const { tsImport } = await import('tsx/esm/api');
      mod = (await tsImport(url, import.meta.url)) as { default?: unknown };
    } else {
      mod = (await import(url)) as { default?: unknown };
    }
  } catch (error) {
    if ((error as { name?: string }).name === 'ConfigError') throw error;
    throw new ConfigError(
      '<module>',
      `cannot load ${modulePath}: ${(error as Error).message.split('\n')[0]}`,
    );
  }
  const def = (mod.default as { default?: unknown } | undefined)?.default ?? mod.default;
  if (!isWorkerDefinition(def)) {
    throw new ConfigError('<module>', `${modulePath} must default-export defineWorker({...})`);
  }
  return def;
}

export function registerWorker(program: Command): void {
  const cmd = program
    .command('worker')
    .description(
      'run a worker module (its default export is defineWorker({...})); SIGTERM stops it gracefully',
    )
    .argument('<module>', 'a .js/.mjs or .ts file')
    .option('--concurrency <n>', "override the module's concurrency", (v) => Number(v));
  withConnectionFlags(cmd).addHelpText(
    'after',
    `
The connection comes from the module, else from the flags or STRAND_BROKERS / STRAND_REGISTRY_URL.
Logs are JSON lines on stderr (STRAND_LOG_LEVEL=debug shows every job).

Examples:
  strand worker examples/payment-worker.ts
  STRAND_BROKERS=kafka-1:9092 strand worker dist/worker.js --concurrency 64`,
  );
  cmd.action(
    action(async (modulePath: string, flags: ConnectionFlags & { concurrency?: number }) => {
      const def = (await loadDefinition(modulePath)) as WorkerOptions;
      const { kafka, registry } = resolveConnection(flags);
      delete kafka.clientId; // the worker names its client after its group
      delete kafka.retries; // a long-running worker keeps retrying
      const logger = def.logger ?? createLogger({ name: 'strand-worker' });
      const options: WorkerOptions = {
        ...def,
        logger,
        registry: def.registry ?? registry,
        ...(def.brokers || def.kafka ? {} : { kafka }),
        ...(flags.concurrency !== undefined ? { concurrency: flags.concurrency } : {}),
      };
      const worker = new Worker(options);
      let stopping = false;
      const stop = (signal: string) => {
        if (stopping) {
          logger.warn({ signal }, 'second signal: exiting without waiting');
          process.exit(EXIT.failure);
        }
        stopping = true;
        logger.info({ signal }, 'stopping: finishing running jobs, committing, leaving the group');
        worker.stop().then(
          () => process.exit(EXIT.ok),
          (error: unknown) => {
            logger.error({ err: error }, 'stop failed');
            process.exit(EXIT.failure);
          },
        );
      };
      process.on('SIGTERM', () => stop('SIGTERM'));
      process.on('SIGINT', () => stop('SIGINT'));
      await worker.start();
      // Keep running until a signal arrives.
      await new Promise(() => undefined);
    }),
  );
}
