/**
 * The producer scenario alone: JobProducer.enqueueMany (from dist/) against a raw kafkajs producer
 * that Avro-encodes the same records, and Kafka's ProducerPerformance, interleaved.
 * Usage: npm run bench:producer [-- --quick] [--rounds N]. Writes bench/results/producer.json
 * (quick: producer-quick.json). Build first (`npm run build`): this script does not.
 */
import { parseArgs } from 'node:util';
import { writeResult } from './env.js';
import { benchStack, deleteBenchTopics } from './lib.js';
import { producer } from './scenarios.js';

const { values } = parseArgs({ options: { quick: { type: 'boolean' }, rounds: { type: 'string' } } });
const quick = values.quick === true;
const s = await benchStack();
try {
  const result = { ...(await producer(s, { quick, rounds: Number(values.rounds ?? 3) })), quick };
  console.log(JSON.stringify(result));
  console.error(`wrote ${writeResult(quick ? 'producer-quick' : 'producer', result)}`);
  process.exitCode = Array.isArray(result.errors) && result.errors.length ? 1 : 0;
} catch (error) {
  console.error(`failed: ${(error as Error).stack ?? error}`);
  process.exitCode = 1;
} finally {
  await deleteBenchTopics(s);
}
process.exit();
