import { existsSync } from 'node:fs';
import { relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Command } from 'commander';
import { ConfigError } from '../config/index.js';
import { createLogger } from '../observability/logger.js';
import { isWorkerDefinition, type WorkerOptions } from '../worker/options.js';
import { Worker } from '../worker/worker.js';
import { action, CliError, EXIT } from './common.js';
import { type ConnectionFlags, resolveConnection, withConnectionFlags } from './connection.js';

interface EsbuildMessage {
  text: string;
  location?: { file: string; line: number; column: number } | null;
}

const here = (file: string) => {
  const path = file.startsWith('file:') ? fileURLToPath(file) : file;
  const rel = relative(process.cwd(), path);
  return rel.startsWith('..') ? path : rel;
};

/**
 * Why a module did not load, in one line with its place: esbuild's messages (each with
 * file:line:column) instead of its "Transform failed with 1 error:" header, or a throw at import
 * time with the first stack frame outside Strand and node_modules.
 */
export function loadFailure(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const messages = (error as { errors?: EsbuildMessage[] }).errors;
  if (Array.isArray(messages) && messages.length > 0) {
    return messages
      .map((m) =>
        m.location ? `${here(m.location.file)}:${m.location.line}:${m.location.column}: ${m.text}` : m.text,
      )
      .join('; ');
  }
  const lines = error.message.split('\n').filter((l) => l.trim() !== '');
  const text = /^Transform failed with \d+ errors?:$/.test(lines[0] ?? '') ? lines.slice(1) : lines;
  const what = `${error.name === 'Error' ? '' : `${error.name}: `}${text.join(' ')}`;
  const frame = (error.stack ?? '')
    .split('\n')
    .map((l) => /\(?((?:file:\/\/)?\/[^():]+):(\d+):(\d+)\)?\s*$/.exec(l.trim()))
    .find((m) => m && !/node_modules|\/dist\/cli\/|node:internal/.test(m[1] ?? ''));
  return frame ? `${what} (at ${here(frame[1]!)}:${frame[2]}:${frame[3]})` : what;
}

async function loadDefinition(modulePath: string): Promise<unknown> {
  const file = resolve(modulePath);
  if (!existsSync(file)) throw new ConfigError('<module>', `${modulePath} not found`);
  if (!/\.(c|m)?(j|t)sx?$/.test(file))
    throw new ConfigError(
      '<module>',
      `${modulePath} is not a JavaScript or TypeScript module (.js, .mjs, .ts)`,
    );
  const url = pathToFileURL(file).href;
  const typescript = /\.(c|m)?tsx?$/.test(file);
  // TypeScript modules load through tsx's ESM loader, scoped to this import.
  const tsx = typescript
    ? await import('tsx/esm/api').catch(() => {
        throw new ConfigError(
          '<module>',
          `${modulePath}: TypeScript modules need tsx (npm install tsx), or compile it to .js`,
        );
      })
    : undefined;
  let mod: { default?: unknown };
  try {
    if (tsx) {
      mod = (await tsx.tsImport(url, import.meta.url)) as { default?: unknown };
    } else {
      mod = (await import(url)) as { default?: unknown };
    }
  } catch (error) {
    if ((error as { name?: string }).name === 'ConfigError') throw error;
    // The module itself failed (a syntax error, a throw at import time): a runtime failure, exit 1.
    throw new CliError(`cannot load ${modulePath}: ${loadFailure(error)}`, EXIT.failure);
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
      try {
        await worker.start();
      } catch (error) {
        // The worker closed what it opened; a store the module made (Redis) would keep us running.
        const store = def.idempotency?.store;
        if (store && store !== 'memory') await store.close?.().catch(() => undefined);
        throw error;
      }
      // Keep running until a signal arrives.
      await new Promise(() => undefined);
    }),
  );
}
