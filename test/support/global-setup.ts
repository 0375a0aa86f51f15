import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { TestProject } from 'vitest/node';
import { stackDown, stackStatus, stackUp } from '../../src/devstack/index.js';
import { cleanUpNames, describeTraces, isEmpty, type StackTarget } from './cleanup.js';
import { type PostgresInfo, providePostgres, type TestPostgres } from './postgres-server.js';
import { type LocalRedis, provideRedis } from './redis-server.js';

declare module 'vitest' {
  export interface ProvidedContext {
    brokers: string[];
    registryUrl: string;
    stackSource: 'env' | 'testcontainers' | 'devstack';
    /** A SASL/SCRAM listener and its user (the devstack's, or STRAND_TEST_SASL_* in env mode). */
    sasl: { brokers: string[]; mechanism: 'scram-sha-256'; username: string; password: string } | null;
    /** A TLS listener and the CA file to trust (the devstack's, or STRAND_TEST_TLS_* in env mode). */
    tls: { brokers: string[]; caFile: string } | null;
    /** A Redis for the idempotency tests, or why there is none (those tests are then skipped). */
    redis: { host: string; port: number } | { missing: string };
    /** A PostgreSQL shared by the test files (`test/support/postgres.ts`), or why there is none. */
    postgres: PostgresInfo | { missing: string };
    /** The file every name a test marks for cleanup is appended to (`cleanUpAfterFile`). */
    cleanupLedger: string;
  }
}

const run = promisify(execFile);

async function dockerAnswers(): Promise<boolean> {
  try {
    await run('docker', ['info', '--format', '{{.ServerVersion}}'], { timeout: 5000 });
    return true;
  } catch {
    return false;
  }
}

let teardown: (() => Promise<void>) | undefined;
let redisServer: LocalRedis | undefined;
let postgresServer: TestPostgres | undefined;
let ledgerDir: string | undefined;
let target: StackTarget | undefined;

/**
 * Gives every test a real broker and registry: `STRAND_BROKERS`/`STRAND_REGISTRY_URL` when set,
 * else a devstack that is already running, else containers when a Docker engine answers, else the
 * devstack (started here and stopped after the run). The devstack comes before Docker when it runs
 * because it has the SASL and TLS listeners the security tests use; the containers do not.
 * Redis: see `provideRedis`; PostgreSQL: see `providePostgres`.
 */
export async function setup(project: TestProject): Promise<void> {
  redisServer = await provideRedis(project);
  postgresServer = await providePostgres(project);
  await provideStack(project);
  const provided = project.getProvidedContext();
  target = { brokers: provided.brokers, registryUrl: provided.registryUrl };
  ledgerDir = mkdtempSync(join(tmpdir(), 'strand-test-names-'));
  project.provide('cleanupLedger', join(ledgerDir, 'names'));
}

/**
 * Each test file deletes what it made after its tests (`test/support/cleanup-after-file.ts`); a
 * file that crashed or was cut off did not get there: whatever is left of the run's names goes here.
 */
async function sweepLedger(): Promise<void> {
  if (!ledgerDir || !target) return;
  let names: string[] = [];
  try {
    names = readFileSync(join(ledgerDir, 'names'), 'utf8').split('\n').filter(Boolean);
  } catch {
    // no test marked a name
  }
  rmSync(ledgerDir, { recursive: true, force: true });
  if (!names.length) return;
  const left = await cleanUpNames(target, names, { groupWaitMs: 60_000 }).catch((error: Error) => error);
  if (left instanceof Error)
    process.stderr.write(`[cleanup] could not clean up after the run: ${left.message}\n`);
  else if (!isEmpty(left))
    process.stderr.write(`[cleanup] left on the stack after the run: ${describeTraces(left)}\n`);
}

async function provideStack(project: TestProject): Promise<void> {
  const envBrokers = process.env.STRAND_BROKERS;
  const envRegistry = process.env.STRAND_REGISTRY_URL;
  if (envBrokers && envRegistry) {
    project.provide('brokers', envBrokers.split(','));
    project.provide('registryUrl', envRegistry);
    project.provide('stackSource', 'env');
    const saslBrokers = process.env.STRAND_TEST_SASL_BROKERS;
    project.provide(
      'sasl',
      saslBrokers
        ? {
            brokers: saslBrokers.split(','),
            mechanism: 'scram-sha-256',
            username: process.env.STRAND_TEST_SASL_USERNAME ?? '',
            password: process.env.STRAND_TEST_SASL_PASSWORD ?? '',
          }
        : null,
    );
    const tlsBrokers = process.env.STRAND_TEST_TLS_BROKERS;
    project.provide(
      'tls',
      tlsBrokers
        ? { brokers: tlsBrokers.split(','), caFile: process.env.STRAND_TEST_TLS_CA_FILE ?? '' }
        : null,
    );
    return;
  }
  // A stack that runs in part (its registry killed, say) is the user's: `stackUp` starts the part
  // that is down, and the teardown leaves it running.
  const wasRunning = stackStatus()?.alive.some(Boolean) === true;
  if (!wasRunning && process.env.STRAND_TEST_DOCKER !== '0' && (await dockerAnswers())) {
    const { startContainers } = await import('./containers.js');
    const stack = await startContainers();
    project.provide('brokers', stack.brokers);
    project.provide('registryUrl', stack.registryUrl);
    project.provide('stackSource', 'testcontainers');
    project.provide('sasl', null);
    project.provide('tls', null);
    teardown = stack.stop;
    return;
  }
  const { info } = await stackUp({ onProgress: (line) => process.stderr.write(`[devstack] ${line}\n`) });
  project.provide('brokers', info.brokers);
  project.provide('registryUrl', info.registryUrl);
  project.provide('stackSource', 'devstack');
  project.provide('sasl', info.sasl ?? null);
  project.provide('tls', info.tls ?? null);
  if (!wasRunning && process.env.STRAND_TEST_KEEP_STACK !== '1') {
    teardown = async () => {
      await stackDown();
    };
  }
}

export async function teardownAll(): Promise<void> {
  await sweepLedger();
  await teardown?.();
  await redisServer?.stop();
  await postgresServer?.stop();
}

export { teardownAll as teardown };
