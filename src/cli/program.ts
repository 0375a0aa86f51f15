import { Command } from 'commander';
import { configureProgram } from './common.js';
import { registerConsole } from './console.js';
import { registerDemo } from './demo.js';
import { registerDev } from './dev.js';
import { registerDlq } from './dlq.js';
import { registerEnqueue } from './enqueue.js';
import { registerLag } from './lag.js';
import { registerOutbox } from './outbox.js';
import { registerTopics } from './topics.js';
import { registerWorker } from './worker.js';

/** The `strand` command with every subcommand (main.ts parses argv with it; tests read its flags). */
export function buildProgram(): Command {
  const program = configureProgram(new Command('strand'))
    .description('Strand: ordered, schema-governed job pipelines on Apache Kafka')
    .version('0.1.0')
    .showSuggestionAfterError()
    .addHelpText(
      'after',
      `
Connection: --brokers / --registry-url, else STRAND_BROKERS / STRAND_REGISTRY_URL, else the running
"strand dev up" stack. Exit codes: 0 ok, 1 runtime failure, 2 bad usage or config.

Examples:
  strand dev up
  strand topics create payments --partitions 6 --retry-tiers 1s,10s,60s
  strand enqueue payments --schema schemas/payment.avsc --key-field accountId --file jobs.ndjson
  strand worker examples/payment-worker.ts
  strand lag --group payments-workers --watch
  strand dlq list payments
  strand outbox relay --database-url postgres://app@db:5432/shop`,
    );

  registerDev(program);
  registerEnqueue(program);
  registerTopics(program);
  registerWorker(program);
  registerDlq(program);
  registerLag(program);
  registerOutbox(program);
  registerConsole(program);
  registerDemo(program);
  return program;
}
