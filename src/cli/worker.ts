import type { Command } from 'commander';
import { createKafka, explainConnectError, type KafkaConnection } from '../kafka/client.js';
import { createLogger } from '../observability/logger.js';
import { recordEventTrace } from '../worker/event-trace.js';
import type { WorkerOptions } from '../worker/options.js';
import { Worker } from '../worker/worker.js';
import { action, EXIT } from './common.js';
import { CLI_RETRIES, type ConnectionFlags, resolveConnection, withConnectionFlags } from './connection.js';
import { loadDefinition } from './module-load.js';

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
STRAND_TRACE_FILE=path appends the worker's events (starts, ends, outcomes, assignments, commits,
pause, drains) to path as JSON lines, for checking a run (docs/chaos.md).

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
      // An event trace for checking a real run (chaos scenarios, docs/chaos.md); off unless set.
      const traceFile = process.env.STRAND_TRACE_FILE;
      if (traceFile) recordEventTrace(worker, traceFile, worker.options);
      await probeBrokers({
        ...(options.kafka ?? { brokers: [] }),
        ...(def.brokers ? { brokers: def.brokers } : {}),
      });
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
        await def.limits?.store?.close?.().catch(() => undefined);
        throw error;
      }
      // Keep running until a signal arrives.
      await new Promise(() => undefined);
    }),
  );
}

/**
 * Fails as fast as every other command, with the same line, when no broker answers. The worker
 * itself keeps retrying (once running it rides out an outage), which at the start only kept a
 * person waiting 15-25 s in silence for the same verdict.
 */
async function probeBrokers(conn: KafkaConnection): Promise<void> {
  const admin = createKafka({ ...conn, clientId: 'strand-cli', retries: CLI_RETRIES }).admin();
  try {
    await admin.connect();
  } catch (error) {
    throw explainConnectError(error, conn);
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}
