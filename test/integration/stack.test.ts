import { existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { stackHome, stackStatus, stackUp } from '../../src/devstack/index.js';
import { createKafka } from '../../src/kafka/client.js';
import { runCli } from '../support/cli.js';
import { createTopics, stack, uniqueName, waitUntil } from '../support/helpers.js';

describe('the local stack is real', () => {
  it('creates a topic, produces and consumes records with headers through the broker', async () => {
    const topic = uniqueName('stack-smoke');
    const cleanup = await createTopics([{ topic, numPartitions: 3 }]);
    const kafka = createKafka(stack().connection);
    const producer = kafka.producer({ idempotent: true });
    await producer.connect();
    const sent = Array.from({ length: 30 }, (_, i) => ({
      key: `k${i % 5}`,
      value: `v${i}`,
      headers: { n: String(i) },
    }));
    const meta = await producer.send({ topic, acks: -1, messages: sent });
    await producer.disconnect();
    expect(meta.every((m) => m.errorCode === 0)).toBe(true);

    const consumer = kafka.consumer({ groupId: uniqueName('stack-smoke-g') });
    const received: { key: string; value: string; n: string }[] = [];
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        received.push({
          key: String(message.key),
          value: String(message.value),
          n: String(message.headers?.n),
        });
      },
    });
    await waitUntil(() => received.length >= 30, { what: '30 records' });
    await consumer.disconnect();
    await cleanup();
    expect(received.map((r) => r.value).sort()).toEqual(sent.map((s) => s.value).sort());
    for (const r of received) expect(r.value).toBe(`v${r.n}`);
  });

  it('registers an Avro schema in the registry and reads it back by id', async () => {
    const { registryUrl } = stack();
    const subject = `${uniqueName('stack-schema')}-value`;
    const schema = JSON.stringify({
      type: 'record',
      name: 'Smoke',
      namespace: 'dev.strand.test',
      fields: [{ name: 'id', type: 'string' }],
    });
    const res = await fetch(`${registryUrl}/subjects/${subject}/versions`, {
      method: 'POST',
      headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' },
      body: JSON.stringify({ schema }),
    });
    expect(res.status).toBe(200);
    const { id } = (await res.json()) as { id: number };
    expect(id).toBeGreaterThan(0);
    const byId = (await (await fetch(`${registryUrl}/schemas/ids/${id}`)).json()) as { schema: string };
    expect(JSON.parse(byId.schema)).toEqual(JSON.parse(schema));
    const subjects = (await (await fetch(`${registryUrl}/subjects`)).json()) as string[];
    expect(subjects).toContain(subject);
  });

  it.runIf(inject('stackSource') === 'devstack')('a second "up" while running is a fast no-op', async () => {
    const before = stackStatus();
    const t0 = Date.now();
    const { alreadyRunning, info } = await stackUp();
    expect(alreadyRunning).toBe(true);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(info.processes.map((p) => p.pid)).toEqual(before?.processes.map((p) => p.pid));
  });
});

/** Ports for a second one-node stack: 4 in a row for Kafka (plaintext, controller, SASL, TLS), 2 for the registry. */
async function freePortBlock(): Promise<{ kafkaPort: number; registryPort: number }> {
  for (;;) {
    // Below the kernel's ephemeral range (32768+), so no client socket of a parallel test takes one
    // of these between this check and the broker's bind.
    const kafkaPort = 20_000 + Math.floor(Math.random() * 12_000);
    const ports = [0, 1, 2, 3, 10, 11].map((d) => kafkaPort + d);
    const free = await Promise.all(
      ports.map(
        (port) =>
          new Promise<boolean>((resolve) => {
            const server = createServer();
            server.once('error', () => resolve(false));
            server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
          }),
      ),
    );
    if (free.every(Boolean)) return { kafkaPort, registryPort: kafkaPort + 10 };
  }
}

describe.runIf(inject('stackSource') === 'devstack')('a half-up stack', () => {
  it('with the registry killed: status per part (exit 3), "dev up" starts only the registry, Kafka keeps its pid and its clients; the stack runs the Kafka version asked for', async () => {
    // A stack of its own, so the one the other tests use keeps its registry; the jars are shared.
    const home = mkdtempSync(join(tmpdir(), 'strand-half-up-'));
    const cache = join(stackHome(), 'cache');
    if (existsSync(cache)) symlinkSync(cache, join(home, 'cache'));
    const { kafkaPort, registryPort } = await freePortBlock();
    // Not the default release (docs/compatibility.md), so the option is what chose it.
    const version = '4.1.2';
    const dev = (args: string[]) =>
      runCli(['dev', ...args, '--home', home], {
        timeoutMs: 240_000,
        env: { STRAND_HOME: home, STRAND_KAFKA_VERSION: '' },
      });
    try {
      const up = await dev([
        'up',
        '--kafka-version',
        version,
        '--kafka-port',
        String(kafkaPort),
        '--registry-port',
        String(registryPort),
      ]);
      expect(up.code, up.stderr).toBe(0);
      expect(up.stdout).toContain(`(Kafka ${version}, KRaft)`);
      const first = stackStatus({ home })!;
      const kafka = first.processes.find((p) => p.name === 'kafka-1')!;
      const registry = first.processes.find((p) => p.name === 'registry')!;
      // The broker's own word, and a running stack of another version is refused when one is asked for.
      expect(readFileSync(kafka.log, 'utf8')).toMatch(
        new RegExp(`Kafka version: ${version.replaceAll('.', '\\.')}\\b`),
      );
      const other = await dev(['up', '--kafka-version', '4.4.0']);
      expect(other.code).toBe(1);
      expect(other.stderr).toContain(
        `the stack already runs Kafka ${version}; run "strand dev down" before asking for 4.4.0`,
      );

      // A client of Kafka, connected before the registry goes: it must not lose its broker.
      const admin = createKafka({ brokers: first.brokers, clientId: 'half-up' }).admin();
      await admin.connect();
      const topic = uniqueName('half-up');
      await admin.createTopics({ topics: [{ topic, numPartitions: 1 }] });

      process.kill(registry.pid, 'SIGKILL');
      await waitUntil(() => stackStatus({ home })?.alive[first.processes.indexOf(registry)] === false, {
        what: 'the registry process gone',
      });
      const half = await dev(['status']);
      expect(half.code).toBe(3);
      expect(half.stdout).toMatch(new RegExp(`^kafka\\s+up\\s.*\\(Kafka ${version}, KRaft\\)`, 'm'));
      expect(half.stdout).toMatch(/^registry\s+down\s/m);
      expect(half.stdout).toContain('"strand dev up" starts only what is down');
      const json = await dev(['status', '--json']);
      expect(json.code).toBe(3);
      const parsed = JSON.parse(json.stdout) as {
        running: boolean;
        state: string;
        parts: { name: string; state: string }[];
      };
      expect({
        running: parsed.running,
        state: parsed.state,
        parts: parsed.parts.map((p) => [p.name, p.state]),
      }).toEqual({
        running: false,
        state: 'partly',
        parts: [
          ['kafka', 'up'],
          ['registry', 'down'],
        ],
      });

      const again = await dev(['up']);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stdout).toMatch(
        new RegExp(`^started registry in [\\d.]+s; kafka-1 \\(pid ${kafka.pid}\\) kept running`),
      );
      const after = stackStatus({ home })!;
      expect(after.alive).toEqual([true, true]);
      const kafkaAfter = after.processes.find((p) => p.name === 'kafka-1')!;
      expect({ pid: kafkaAfter.pid, startedAt: kafkaAfter.startedAt }).toEqual({
        pid: kafka.pid,
        startedAt: kafka.startedAt,
      });
      expect(after.processes.find((p) => p.name === 'registry')!.pid).not.toBe(registry.pid);
      expect((await fetch(`${after.registryUrl}/subjects`)).status).toBe(200);
      // The client connected before still talks to the same broker.
      expect(await admin.listTopics()).toContain(topic);
      await admin.disconnect();
      const whole = await dev(['status']);
      expect(whole.code).toBe(0);
      expect(whole.stdout).toMatch(/^registry\s+up\s/m);
    } finally {
      const down = await dev(['down']);
      expect(down.code, down.stderr).toBe(0);
      const gone = await dev(['status']);
      expect({ code: gone.code, out: gone.stdout }).toEqual({
        code: 1,
        out: 'not running (start it with "strand dev up")\n',
      });
      rmSync(home, { recursive: true, force: true });
    }
  }, 300_000);
});
