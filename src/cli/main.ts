#!/usr/bin/env node
import { Command } from 'commander';
import { configureProgram, handleCommanderExit } from './common.js';
import { registerConsole } from './console.js';
import { registerDemo } from './demo.js';
import { registerDev } from './dev.js';
import { registerDlq } from './dlq.js';
import { registerEnqueue } from './enqueue.js';
import { registerLag } from './lag.js';
import { registerTopics } from './topics.js';
import { registerWorker } from './worker.js';

const program = configureProgram(new Command('strand'))
  .description('Strand: ordered, schema-governed job pipelines on Apache Kafka')
  .version('0.1.0')
  .showSuggestionAfterError();

registerDev(program);
registerEnqueue(program);
registerTopics(program);
registerWorker(program);
registerDlq(program);
registerLag(program);
registerConsole(program);
registerDemo(program);

try {
  await program.parseAsync(process.argv);
} catch (error) {
  handleCommanderExit(error);
}
