/**
 * Lists what a stack holds that tests could have left: topics, consumer groups, registry subjects,
 * live worker status records and control records (internal topics left out). Compare a listing
 * before and after a test run:
 *   node --import tsx test/support/traces-cli.ts > before.txt
 * The stack: STRAND_BROKERS / STRAND_REGISTRY_URL, else the running `strand dev up` stack.
 */
import { stackStatus } from '../../src/devstack/index.js';
import { listTraces } from './cleanup.js';

const running = stackStatus();
const brokers = process.env.STRAND_BROKERS?.split(',') ?? running?.brokers;
const registryUrl = process.env.STRAND_REGISTRY_URL ?? running?.registryUrl;
if (!brokers || !registryUrl) {
  process.stderr.write('no stack: set STRAND_BROKERS and STRAND_REGISTRY_URL, or run "strand dev up"\n');
  process.exit(2);
}
const t = await listTraces({ brokers, registryUrl }, () => true);
const lines = [
  ...t.topics.map((n) => `topic    ${n}`),
  ...t.groups.map((n) => `group    ${n}`),
  ...t.subjects.map((n) => `subject  ${n}`),
  ...t.workers.map((w) => `worker   ${w.workerId} group=${w.group} topic=${w.topic}`),
  ...t.controls.map((n) => `control  ${n}`),
];
process.stdout.write(`${lines.join('\n')}${lines.length ? '\n' : ''}`);
process.stderr.write(
  `${t.topics.length} topics, ${t.groups.length} groups, ${t.subjects.length} subjects, ${t.workers.length} worker status records, ${t.controls.length} control records\n`,
);
