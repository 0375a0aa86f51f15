import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import type { RegistryOptions } from '../../src/codec/index.js';
import type { KafkaConnection } from '../../src/kafka/client.js';
import { createLogger, type Logger } from '../../src/observability/logger.js';
import { JobProducer } from '../../src/producer/job-producer.js';
import type { Job } from '../../src/worker/options.js';
import { Worker } from '../../src/worker/worker.js';
import { runCli } from '../support/cli.js';
import { jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { type Payment, paymentSchema } from '../support/jobs.js';
import { skipWhenMissing } from '../support/optional.js';
import { TcpProxy } from '../support/proxy.js';
import { SecureRegistry } from '../support/secure-registry.js';

function saslListener() {
  const sasl = inject('sasl');
  if (!sasl) {
    throw new Error(
      'no SASL listener: the devstack provides one; with STRAND_BROKERS set, also set STRAND_TEST_SASL_BROKERS/USERNAME/PASSWORD',
    );
  }
  return sasl;
}

/** A logger at debug level whose lines are kept, to search them for secrets. */
function capturingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger = createLogger({ level: 'debug', destination: { write: (l: string) => lines.push(l) } });
  return { logger, lines };
}

function payments(n: number) {
  return Array.from({ length: n }, (_, i) => ({
    key: `acct-${i % 5}`,
    data: {
      paymentId: `pay-${i}`,
      accountId: `acct-${i % 5}`,
      amountCents: 100 + i,
      currency: 'EUR' as const,
      sequence: i,
      createdAt: Date.now(),
      memo: null,
    },
  }));
}

/**
 * Enqueues `count` jobs on `topic` and runs them with a worker, both connected through `conn` and
 * `registry`; returns the job ids sent and completed (sorted).
 */
async function runJobs(
  topic: string,
  conn: { kafka: KafkaConnection } | { brokers: string[] },
  registry: RegistryOptions,
  logger: Logger,
  count: number,
  check: (job: Job<Payment>) => void = () => undefined,
): Promise<{ sent: string[]; done: string[] }> {
  const producer = new JobProducer<Payment>({ ...conn, registry, topic, schema: paymentSchema, logger });
  await producer.connect();
  const sent = (await producer.enqueueMany(payments(count))).map((r) => r.jobId);
  const done = new Set<string>();
  const worker = new Worker<Payment>({
    ...conn,
    registry,
    topic,
    groupId: uniqueName(`${topic}-g`),
    retry: { tiers: [] },
    logger,
    handler: async (job) => {
      check(job);
      done.add(job.id);
    },
  });
  await worker.start();
  await waitUntil(() => done.size === sent.length, { timeoutMs: 30_000, what: `all jobs on ${topic}` });
  await worker.stop();
  await producer.disconnect();
  return { sent: sent.sort(), done: [...done].sort() };
}

/** Enqueues one job through `registry` (served by `secure`, stopped after) and returns the error and its delay. */
async function enqueueOnce(
  secure: SecureRegistry,
  registry: RegistryOptions,
  prefix: string,
): Promise<{ error: Error; elapsed: number }> {
  const { topic, cleanup } = await jobTopic(prefix, { partitions: 1, tierDelays: [] });
  const producer = new JobProducer<Payment>({
    brokers: stack().brokers,
    registry,
    topic,
    schema: paymentSchema,
  });
  await producer.connect();
  const t0 = Date.now();
  const error = (await producer.enqueue(payments(1)[0]!).catch((e: unknown) => e)) as Error;
  const elapsed = Date.now() - t0;
  await producer.disconnect();
  await cleanup();
  await secure.stop();
  return { error, elapsed };
}

describe('SASL/SCRAM against the real broker', () => {
  it('a producer and a worker authenticate on the SASL listener and run jobs; the password is never logged', async () => {
    const sasl = saslListener();
    const { topic, cleanup } = await jobTopic('sasl', { partitions: 2, tierDelays: [] });
    const kafka = {
      brokers: sasl.brokers,
      sasl: { mechanism: sasl.mechanism, username: sasl.username, password: sasl.password },
    };
    const { logger, lines } = capturingLogger();
    const { sent, done } = await runJobs(topic, { kafka }, { url: stack().registryUrl }, logger, 40);
    await cleanup();
    expect(done).toEqual(sent);
    // The logger redacts credentials even when a whole connection object is logged.
    logger.info({ kafka }, 'connection settings');
    expect(lines.some((l) => l.includes('worker started'))).toBe(true);
    expect(lines.some((l) => l.includes('connection settings') && l.includes('[redacted]'))).toBe(true);
    expect(lines.join('\n')).not.toContain(sasl.password);
  });

  it('a wrong password: start() fails fast with one clear line, after few connection attempts, and the password is not in it', async () => {
    const sasl = saslListener();
    const [host, port] = sasl.brokers[0]!.split(':');
    const proxy = new TcpProxy(host!, Number(port));
    await proxy.start();
    const wrong = `not-the-password-${uniqueName('x')}`;
    const { logger, lines } = capturingLogger();
    const worker = new Worker<Payment>({
      kafka: {
        brokers: [`127.0.0.1:${proxy.port}`],
        sasl: { mechanism: sasl.mechanism, username: sasl.username, password: wrong },
      },
      registry: { url: stack().registryUrl },
      topic: 'never-reached',
      groupId: uniqueName('sasl-bad'),
      retry: { tiers: [] },
      logger,
      handler: async () => undefined,
    });
    const t0 = Date.now();
    const error = (await worker.start().catch((e: unknown) => e)) as Error;
    const elapsed = Date.now() - t0;
    await worker.stop().catch(() => undefined);
    await proxy.cut();
    expect(error).toBeInstanceOf(Error);
    expect(error.message).toMatch(/authentication failed/i);
    expect(error.message).toContain(sasl.username);
    expect(error.message).not.toContain('\n');
    expect(error.message).not.toContain(wrong);
    expect(lines.join('\n')).not.toContain(wrong);
    // Bad credentials are not a transient fault: no retry storm against the broker.
    expect(proxy.connections).toBeLessThanOrEqual(2);
    expect(elapsed).toBeLessThan(10_000);

    // The producer (whose sends retry without limit through outages) gives up on a refused login too.
    const producer = new JobProducer<Payment>({
      kafka: {
        brokers: sasl.brokers,
        sasl: { mechanism: sasl.mechanism, username: sasl.username, password: wrong },
      },
      registry: { url: stack().registryUrl },
      topic: 'never-reached',
      schema: paymentSchema,
      logger,
    });
    const p0 = Date.now();
    const producerError = (await producer.connect().catch((e: unknown) => e)) as Error;
    expect(Date.now() - p0).toBeLessThan(10_000);
    expect(producerError.message).toMatch(/rejected the SASL credentials of user .*authentication failed/);
    expect(lines.join('\n')).not.toContain(wrong);
    await producer.disconnect().catch(() => undefined);
  });

  it('the CLI with a wrong STRAND_SASL_PASSWORD exits 1 with one line and never prints the password', async () => {
    const sasl = saslListener();
    const wrong = `bad-${uniqueName('pw')}`;
    const r = await runCli(['topics', 'create', uniqueName('sasl-cli'), '--partitions', '1'], {
      env: {
        STRAND_BROKERS: sasl.brokers.join(','),
        STRAND_SASL_MECHANISM: sasl.mechanism,
        STRAND_SASL_USERNAME: sasl.username,
        STRAND_SASL_PASSWORD: wrong,
      },
    });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/rejected the SASL credentials of user "strand".*authentication failed/i);
    expect(r.stdout + r.stderr).not.toContain(wrong);
  });
});

function tlsListener() {
  const tls = inject('tls');
  if (!tls) {
    throw new Error(
      'no TLS listener: the devstack provides one (it needs openssl); with STRAND_BROKERS set, also set STRAND_TEST_TLS_BROKERS/CA_FILE',
    );
  }
  return tls;
}

describe('Kafka over TLS against the real broker', () => {
  it('a producer and a worker that trust the CA run jobs over TLS; the CLI takes STRAND_TLS_CA_FILE', async () => {
    const tls = tlsListener();
    const kafka = { brokers: tls.brokers, tls: { ca: readFileSync(tls.caFile, 'utf8') } };
    const { topic, cleanup } = await jobTopic('tls', { partitions: 2, tierDelays: [] });
    const { sent, done } = await runJobs(
      topic,
      { kafka },
      { url: stack().registryUrl },
      createLogger({ level: 'error' }),
      30,
    );
    const cli = await runCli(['lag', '--group', uniqueName('none'), '--topic', topic, '--json'], {
      env: { STRAND_BROKERS: tls.brokers.join(','), STRAND_TLS_CA_FILE: tls.caFile },
    });
    await cleanup();
    expect(done).toEqual(sent);
    expect(cli.code, cli.stderr).toBe(0);
    expect(JSON.parse(cli.stdout)).toBeInstanceOf(Array);
  });

  it('an untrusted broker certificate fails start() with one line that says how to trust it', async () => {
    const tls = tlsListener();
    const worker = new Worker<Payment>({
      kafka: { brokers: tls.brokers, tls: true, retries: 1 },
      registry: { url: stack().registryUrl },
      topic: 'never-reached',
      groupId: uniqueName('tls-bad'),
      retry: { tiers: [] },
      logger: createLogger({ level: 'silent' }),
      handler: async () => undefined,
    });
    const error = (await worker.start().catch((e: unknown) => e)) as Error;
    expect(error.message).toMatch(
      /^TLS to Kafka at .* failed: .*(self[- ]signed|certificate).*STRAND_TLS_CA_FILE/,
    );
    expect(error.message).not.toContain('\n');
    const cli = await runCli(['topics', 'create', uniqueName('tls-cli'), '--partitions', '1'], {
      env: { STRAND_BROKERS: tls.brokers.join(','), STRAND_TLS: '1' },
    });
    expect(cli.code).toBe(1);
    expect(cli.stderr.trim().split('\n')).toHaveLength(1);
    expect(cli.stderr).toMatch(/TLS to Kafka failed: .*STRAND_TLS_CA_FILE/);
  });
});

describe('metrics server', () => {
  it("binds only where configured: loopback answers, the machine's other addresses refuse", async (ctx) => {
    // Without an address other than loopback there is nothing to refuse: skipped with the reason
    // (failed in CI), never passed vacuously.
    const others = Object.values(networkInterfaces())
      .flat()
      .filter((i) => i && i.family === 'IPv4' && !i.internal)
      .map((i) => i!.address);
    skipWhenMissing(
      ctx,
      others.length === 0 ? 'no IPv4 address other than loopback on this machine' : undefined,
    );
    const { topic, cleanup } = await jobTopic('bind', { partitions: 1, tierDelays: [] });
    const worker = new Worker<Payment>({
      brokers: stack().brokers,
      registry: { url: stack().registryUrl },
      topic,
      groupId: uniqueName('bind-g'),
      retry: { tiers: [] },
      metrics: { host: '127.0.0.1', port: 0 },
      logger: createLogger({ level: 'error' }),
      handler: async () => undefined,
    });
    await worker.start();
    const port = worker.metricsPort!;
    const loopback = await fetch(`http://127.0.0.1:${port}/healthz`);
    const refused = await Promise.all(
      others.map((a) =>
        fetch(`http://${a}:${port}/healthz`, { signal: AbortSignal.timeout(2000) }).then(
          () => false,
          () => true,
        ),
      ),
    );
    await worker.stop();
    await cleanup();
    expect(loopback.status).toBe(200);
    expect(others.length).toBeGreaterThan(0);
    expect(refused).toEqual(others.map(() => true));
    console.info(`metrics on 127.0.0.1:${port}; refused on ${others.join(', ')}`);
  });
});

describe('schema registry over HTTPS with basic auth (the real registry behind a TLS proxy)', () => {
  it('a producer and a worker that trust the CA and send the credentials register, encode and decode', async () => {
    const secure = await new SecureRegistry(
      stack().registryUrl,
      'svc-strand',
      `pw-${uniqueName('r')}`,
    ).start();
    const { topic, cleanup } = await jobTopic('tls-reg', { partitions: 2, tierDelays: [] });
    const registry = {
      url: secure.url,
      auth: { username: secure.username, password: secure.password },
      tls: { ca: secure.ca },
    };
    const { logger, lines } = capturingLogger();
    const { sent, done } = await runJobs(topic, { brokers: stack().brokers }, registry, logger, 20, (job) =>
      expect(job.data.currency).toBe('EUR'),
    );
    await cleanup();
    await secure.stop();
    expect(done).toEqual(sent);
    // Both the producer's registration and the worker's schema-by-id lookup went through the proxy.
    expect(secure.requests).toBeGreaterThanOrEqual(2);
    expect(secure.refused).toBe(0);
    expect(lines.join('\n')).not.toContain(secure.password);
  });

  it('a wrong registry password fails at once with one line naming the user, not after outage retries', async () => {
    const secure = await new SecureRegistry(stack().registryUrl, 'svc-strand', 'right-password').start();
    const { error, elapsed } = await enqueueOnce(
      secure,
      {
        url: secure.url,
        auth: { username: 'svc-strand', password: 'wrong-password' },
        tls: { ca: secure.ca },
      },
      'tls-bad',
    );
    expect(error.name).toBe('RegistryAccessError');
    expect(error.message).toMatch(/refused the credentials of user "svc-strand".*HTTP 401/);
    expect(error.message).not.toContain('wrong-password');
    expect(error.message).not.toContain('\n');
    expect(elapsed).toBeLessThan(3000);
  });

  it('an untrusted certificate fails with one line that says how to trust the CA', async () => {
    const secure = await new SecureRegistry(stack().registryUrl, 'svc-strand', 'pw').start();
    const { error, elapsed } = await enqueueOnce(
      secure,
      { url: secure.url, auth: { username: 'svc-strand', password: 'pw' } },
      'tls-ca',
    );
    expect(error.name).toBe('RegistryAccessError');
    expect(error.message).toMatch(
      /TLS to the schema registry .* failed .*self[- ]signed.*registry\.tls\.ca/i,
    );
    expect(secure.requests).toBe(0);
    expect(elapsed).toBeLessThan(3000);
  });

  it('the CLI takes the registry credentials and CA from the environment', async () => {
    const secure = await new SecureRegistry(stack().registryUrl, 'svc-cli', 'cli-secret').start();
    const { topic, cleanup } = await jobTopic('tls-cli', { partitions: 1, tierDelays: [] });
    const dir = mkdtempSync(join(tmpdir(), 'strand-ca-'));
    writeFileSync(join(dir, 'ca.pem'), secure.ca);
    const env = {
      STRAND_REGISTRY_URL: secure.url,
      STRAND_REGISTRY_USERNAME: 'svc-cli',
      STRAND_REGISTRY_CA_FILE: join(dir, 'ca.pem'),
    };
    const data = JSON.stringify(payments(1)[0]!.data);
    const ok = await runCli(['enqueue', topic, '--schema', 'schemas/payment.avsc', '--data', data], {
      env: { ...env, STRAND_REGISTRY_PASSWORD: 'cli-secret' },
    });
    const refused = await runCli(['enqueue', topic, '--schema', 'schemas/payment.avsc', '--data', data], {
      env: { ...env, STRAND_REGISTRY_PASSWORD: 'not-it' },
    });
    await cleanup();
    await secure.stop();
    rmSync(dir, { recursive: true, force: true });
    expect(ok.code, ok.stderr).toBe(0);
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    expect(refused.stderr).toMatch(/refused the credentials of user "svc-cli"/);
    expect(refused.stdout + refused.stderr).not.toContain('not-it');
  });
});
