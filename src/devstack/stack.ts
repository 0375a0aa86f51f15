import { execFile, spawn } from 'node:child_process';
import {
  appendFileSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { createKafka } from '../kafka/client.js';
import { APICURIO_VERSION, apicurioHome, kafkaClasspath, kafkaVersion } from './artifacts.js';
import { selfSignedCertificate } from './certificate.js';
import { DevStackError } from './errors.js';
import { findJava } from './java.js';

const run = promisify(execFile);

export interface StackOptions {
  /** Folder for state, logs and the artifact cache. @defaultValue `$STRAND_HOME` or `./.strand` */
  home?: string;
  /** Number of KRaft nodes (each broker+controller). @defaultValue 1 */
  brokers?: number;
  /** First broker port; node i listens on basePort + 2i, its controller on basePort + 2i + 1. @defaultValue 9092 */
  kafkaPort?: number;
  /** Registry HTTP port. @defaultValue 8081 */
  registryPort?: number;
  /** Kafka release from Maven Central. @defaultValue `$STRAND_KAFKA_VERSION`, else `DEFAULT_KAFKA_VERSION` */
  kafkaVersion?: string;
  /** Progress lines for a human. */
  onProgress?: (line: string) => void;
}

export interface StackProcess {
  name: string;
  pid: number;
  port: number;
  log: string;
  startedAt: number;
  /** How it was started, so a single process can be restarted (chaos tests). */
  command?: { java: string; args: string[]; cwd: string };
}

/** What a running stack offers, as written to `<home>/run/stack.json`. */
export interface StackInfo {
  brokers: string[];
  registryUrl: string;
  kafkaVersion: string;
  registryVersion: string;
  processes: StackProcess[];
  startedAt: number;
  /**
   * A second listener on every broker that requires SASL/SCRAM (over plaintext: a local stack),
   * with a development user, so clients' credential handling is tested against a real broker.
   */
  sasl?: { brokers: string[]; mechanism: 'scram-sha-256'; username: string; password: string };
  /**
   * A TLS listener on every broker with a certificate made for this stack (openssl, on first
   * start); clients trust it with `caFile`. Absent when openssl is not installed.
   */
  tls?: { brokers: string[]; caFile: string };
}

/** The two parts of a stack, each started and stopped on its own by `stackUp` when it is down. */
export type StackPartName = 'kafka' | 'registry';

/**
 * `up`: every process of the part runs (and, from `stackHealth`, accepts connections); `down`:
 * none runs; `degraded`: some run and some do not, or one runs without accepting connections.
 */
export type StackPartState = 'up' | 'down' | 'degraded';

export interface StackPart {
  name: StackPartName;
  state: StackPartState;
  /** Its processes' names (kafka-1 … kafka-N, registry). */
  processes: string[];
  /** Those not running. */
  down: string[];
}

export const partOf = (p: { name: string }): StackPartName => (p.name === 'registry' ? 'registry' : 'kafka');

/** Per part, from each process's state (`running`, or not: `down`, `not answering`). */
export function stackParts(info: StackInfo, states: readonly ProcessState[]): StackPart[] {
  return (['kafka', 'registry'] as const).map((name) => {
    const mine = info.processes
      .map((p, i) => ({ p, state: states[i] ?? 'down' }))
      .filter((x) => partOf(x.p) === name);
    const running = mine.filter((x) => x.state === 'running').length;
    return {
      name,
      state: running === mine.length ? 'up' : mine.every((x) => x.state === 'down') ? 'down' : 'degraded',
      processes: mine.map((x) => x.p.name),
      down: mine.filter((x) => x.state === 'down').map((x) => x.p.name),
    };
  });
}

/** `running` (alive and accepting connections on its port), `not answering` (alive), `down`. */
export type ProcessState = 'running' | 'not answering' | 'down';

export function stackHome(home?: string): string {
  return resolve(home ?? process.env.STRAND_HOME ?? '.strand');
}

const stateFile = (home: string) => join(home, 'run', 'stack.json');

function readState(home: string): StackInfo | undefined {
  try {
    return JSON.parse(readFileSync(stateFile(home), 'utf8')) as StackInfo;
  } catch {
    return undefined;
  }
}

/** True when `pid` is alive and is a process this stack home started (its command line carries the marker). */
export function isOurProcess(pid: number, home: string): boolean {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmdline.includes(`-Dstrand.devstack=${home}`);
  } catch {
    return false;
  }
}

async function portFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const server = createServer();
    server.once('error', () => done(false));
    server.listen(port, '127.0.0.1', () => server.close(() => done(true)));
  });
}

/**
 * The last lines of a log, led by its first ERROR or FATAL lines when they fall before that tail: a
 * broker that fails to bind a port logs why long before the shutdown lines that end its log.
 */
function tail(file: string, lines = 20): string {
  try {
    const all = readFileSync(file, 'utf8').trimEnd().split('\n');
    const last = all.slice(-lines);
    const cause = all
      .slice(0, Math.max(0, all.length - lines))
      .filter((line) => /\b(ERROR|FATAL)\b/.test(line))
      .slice(0, 3);
    return cause.length > 0 ? [...cause, '...', ...last].join('\n') : last.join('\n');
  } catch {
    return '(no log)';
  }
}

/** The development SCRAM user of the local stack's SASL listener (local only; printed by `dev up`). */
export const DEV_SASL_USER = { username: 'strand', password: 'strand-dev-secret' } as const;

/** Node i's SASL listener port: after every node's plaintext and controller ports. */
const saslPort = (basePort: number, n: number, id: number) => basePort + 2 * n + (id - 1);
/** Node i's TLS listener port: after the SASL ports. */
const tlsPort = (basePort: number, n: number, id: number) => basePort + 3 * n + (id - 1);

/**
 * A self-signed certificate for 127.0.0.1 (its own CA) and the PEM keystore Kafka reads (private
 * key + certificate), made once per stack home. Undefined when openssl is missing.
 */
async function stackCertificate(home: string): Promise<{ caFile: string; keystore: string } | undefined> {
  const dir = join(home, 'tls');
  const keystore = join(dir, 'broker-keystore.pem');
  const caFile = join(dir, 'cert.pem');
  if (existsSync(caFile) && existsSync(keystore)) return { caFile, keystore };
  const made = await selfSignedCertificate(dir, { commonName: 'strand devstack', days: 3650 });
  if (!made) return undefined;
  writeFileSync(keystore, `${readFileSync(made.keyFile, 'utf8')}${readFileSync(made.certFile, 'utf8')}`);
  return { caFile: made.certFile, keystore };
}

function kafkaProperties(
  nodeId: number,
  n: number,
  basePort: number,
  dataDir: string,
  keystore: string | undefined,
): string {
  const port = (id: number) => basePort + 2 * (id - 1);
  const voters = Array.from({ length: n }, (_, i) => `${i + 1}@127.0.0.1:${port(i + 1) + 1}`).join(',');
  const rf = Math.min(3, n);
  const sasl = saslPort(basePort, n, nodeId);
  const scram = 'org.apache.kafka.common.security.scram.ScramLoginModule required;';
  const tls = keystore ? `,SSL://127.0.0.1:${tlsPort(basePort, n, nodeId)}` : '';
  return [
    'process.roles=broker,controller',
    `node.id=${nodeId}`,
    `controller.quorum.voters=${voters}`,
    `listeners=PLAINTEXT://127.0.0.1:${port(nodeId)},CONTROLLER://127.0.0.1:${port(nodeId) + 1},SASL_PLAINTEXT://127.0.0.1:${sasl}${tls}`,
    `advertised.listeners=PLAINTEXT://127.0.0.1:${port(nodeId)},SASL_PLAINTEXT://127.0.0.1:${sasl}${tls}`,
    'controller.listener.names=CONTROLLER',
    'inter.broker.listener.name=PLAINTEXT',
    'listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SSL:SSL',
    ...(keystore
      ? ['ssl.keystore.type=PEM', `ssl.keystore.location=${keystore}`, 'ssl.client.auth=none']
      : []),
    'sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512',
    `listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=${scram}`,
    `listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=${scram}`,
    `log.dirs=${dataDir}`,
    `num.partitions=1`,
    `default.replication.factor=${rf}`,
    `offsets.topic.replication.factor=${rf}`,
    'offsets.topic.num.partitions=12',
    `transaction.state.log.replication.factor=${rf}`,
    `transaction.state.log.min.isr=${Math.min(2, rf)}`,
    `share.coordinator.state.topic.replication.factor=${rf}`,
    `share.coordinator.state.topic.min.isr=${Math.min(2, rf)}`,
    'group.initial.rebalance.delay.ms=0',
    'auto.create.topics.enable=false',
    'delete.topic.enable=true',
    '',
  ].join('\n');
}

/** How the registry is started (recorded in the state, so `up` can start it again alone). */
async function registryCommand(
  home: string,
  registryPort: number,
): Promise<NonNullable<StackProcess['command']>> {
  const [registryJava, registryDir] = await Promise.all([
    findJava(21, `Apicurio Registry ${APICURIO_VERSION}`),
    apicurioHome(join(home, 'cache')),
  ]);
  const registryData = join(home, 'registry');
  mkdirSync(registryData, { recursive: true });
  return {
    java: registryJava.bin,
    cwd: registryDir,
    args: [
      '-Xmx512m',
      '-Dquarkus.http.host=127.0.0.1',
      `-Dquarkus.http.port=${registryPort}`,
      // Quarkus' management interface defaults to *:9000; keep it on loopback, next to the API port.
      '-Dquarkus.management.host=127.0.0.1',
      `-Dquarkus.management.port=${registryPort + 1}`,
      // File-backed H2 keeps schema ids across restarts, so records already on the topics stay decodable.
      `-Dapicurio.datasource.url=jdbc:h2:file:${join(registryData, 'registry')};DB_CLOSE_ON_EXIT=FALSE`,
      '-Dapicurio.rest.deletion.artifact.enabled=true',
      '-Dapicurio.rest.deletion.artifact-version.enabled=true',
      '-Dquarkus.log.level=WARN',
      '-jar',
      join(registryDir, 'quarkus-run.jar'),
    ],
  };
}

function spawnJava(home: string, javaBin: string, args: string[], logFile: string, cwd: string): number {
  const fd = openSync(logFile, 'a');
  const child = spawn(javaBin, [`-Dstrand.devstack=${home}`, ...args], {
    cwd,
    detached: true,
    stdio: ['ignore', fd, fd],
  });
  child.unref();
  if (child.pid === undefined) throw new DevStackError(`could not start ${javaBin}`);
  return child.pid;
}

async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  watch: StackProcess[],
  home: string,
  timeoutMs: number,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    for (const p of watch) {
      if (!isOurProcess(p.pid, home)) {
        throw new DevStackError(`${p.name} exited during start; last lines of ${p.log}:\n${tail(p.log)}`);
      }
    }
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) {
      throw new DevStackError(
        `${what} not ready after ${Math.round(timeoutMs / 1000)}s; see ${watch.map((p) => p.log).join(', ')}`,
      );
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function kafkaReady(brokers: string[], expected: number): Promise<boolean> {
  const admin = createKafka({
    brokers,
    clientId: 'strand-devstack',
    connectionTimeoutMs: 1000,
    requestTimeoutMs: 3000,
  }).admin({
    retry: { retries: 0 },
  });
  try {
    await admin.connect();
    const cluster = await admin.describeCluster();
    return cluster.brokers.length >= expected && cluster.controller !== null;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/** True when the dev user can log in on the SASL listener. */
async function saslLoginWorks(sasl: NonNullable<StackInfo['sasl']>): Promise<boolean> {
  const admin = createKafka({
    brokers: sasl.brokers,
    clientId: 'strand-devstack',
    connectionTimeoutMs: 2000,
    requestTimeoutMs: 5000,
    sasl: { mechanism: sasl.mechanism, username: sasl.username, password: sasl.password },
  }).admin({ retry: { retries: 0 } });
  try {
    await admin.connect();
    await admin.describeCluster();
    return true;
  } catch {
    return false;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

/**
 * Storage formatted by an older Strand has no SCRAM user: add it through the plaintext listener
 * (Kafka's own ConfigCommand), so every stack offers the SASL listener with the same user.
 */
async function ensureSaslUser(info: StackInfo, javaBin: string, classpath: string): Promise<void> {
  if (!info.sasl || (await saslLoginWorks(info.sasl))) return;
  const secret = info.sasl.password;
  await run(javaBin, [
    '-cp',
    classpath,
    'kafka.admin.ConfigCommand',
    '--bootstrap-server',
    info.brokers.join(','),
    '--alter',
    '--entity-type',
    'users',
    '--entity-name',
    info.sasl.username,
    '--add-config',
    `SCRAM-SHA-256=[password=${secret}]`,
  ]).catch((error: { stderr?: string; stdout?: string }) => {
    const cause = `${error.stderr ?? ''}\n${error.stdout ?? ''}`
      .split('\n')
      .find((l) => l.startsWith('Caused by:'));
    throw new DevStackError(`adding the SASL development user failed: ${cause?.trim() ?? 'no output'}`);
  });
  for (let i = 0; i < 20; i++) {
    if (await saslLoginWorks(info.sasl)) return;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new DevStackError('the SASL listener does not accept the development user after adding it');
}

async function registryReady(url: string): Promise<boolean> {
  const res = await fetch(`${url}/subjects`, { signal: AbortSignal.timeout(2000) });
  return res.status === 200;
}

/** Status of a stack home: the recorded state, with each process marked alive or not. */
export function stackStatus(opts: { home?: string } = {}): (StackInfo & { alive: boolean[] }) | undefined {
  const home = stackHome(opts.home);
  const state = readState(home);
  if (!state) return undefined;
  return { ...state, alive: state.processes.map((p) => isOurProcess(p.pid, home)) };
}

/**
 * `stackStatus` and more: whether each live process accepts connections on its port, and the state
 * of each part (Kafka, registry), so a half-up stack reads as such.
 */
export async function stackHealth(
  opts: { home?: string } = {},
): Promise<(StackInfo & { alive: boolean[]; states: ProcessState[]; parts: StackPart[] }) | undefined> {
  const status = stackStatus(opts);
  if (!status) return undefined;
  const states = await Promise.all(
    status.processes.map(async (p, i): Promise<ProcessState> => {
      if (!status.alive[i]) return 'down';
      return (await portFree(p.port)) ? 'not answering' : 'running';
    }),
  );
  return { ...status, states, parts: stackParts(status, states) };
}

/**
 * Starts Kafka (KRaft) and the schema registry unless they already run from this home.
 * Resolves when a metadata request succeeds on every broker and the registry answers `/subjects`.
 */
export async function stackUp(
  opts: StackOptions = {},
): Promise<{ info: StackInfo; alreadyRunning: boolean; started: string[] }> {
  const home = stackHome(opts.home);
  const n = opts.brokers ?? 1;
  const basePort = opts.kafkaPort ?? 9092;
  const registryPort = opts.registryPort ?? 8081;
  const say = opts.onProgress ?? (() => undefined);
  if (!Number.isInteger(n) || n < 1 || n > 5) throw new DevStackError(`--brokers: expected 1 to 5, got ${n}`);
  const version = kafkaVersion(opts.kafkaVersion);
  // Only a version asked for (option or environment) must match a running stack; `dev up` alone
  // takes the stack that runs, whichever version it has.
  const versionAsked = Boolean(opts.kafkaVersion || process.env.STRAND_KAFKA_VERSION);

  const current = stackStatus({ home });
  if (current?.alive.some(Boolean)) {
    if (current.brokers.length !== n) {
      throw new DevStackError(
        `the stack already runs with ${current.brokers.length} broker(s); run "strand dev down" before asking for ${n}`,
      );
    }
    if (versionAsked && current.kafkaVersion !== version) {
      throw new DevStackError(
        `the stack already runs Kafka ${current.kafkaVersion}; run "strand dev down" before asking for ${version}`,
      );
    }
    if (current.alive.every(Boolean)) return { info: current, alreadyRunning: true, started: [] };
    // Half up (the registry killed, say): start only what is down, so the clients of the part that
    // runs keep their connections.
    const { alive, ...info } = current;
    return { info, alreadyRunning: false, started: await startStopped(home, info, alive, say) };
  }
  // Nothing of a previous stack runs: forget its state and start afresh.
  if (current) await stackDown({ home });

  const kafkaPorts = Array.from({ length: n }, (_, i) => basePort + 2 * i);
  const saslPorts = kafkaPorts.map((_, i) => saslPort(basePort, n, i + 1));
  const tlsPorts = kafkaPorts.map((_, i) => tlsPort(basePort, n, i + 1));
  for (const port of [
    ...kafkaPorts.flatMap((p) => [p, p + 1]),
    ...saslPorts,
    ...tlsPorts,
    registryPort,
    registryPort + 1,
  ]) {
    if (!(await portFree(port))) {
      throw new DevStackError(
        `port ${port} on 127.0.0.1 is already in use by another process; stop it or choose other ports (--kafka-port, --registry-port)`,
      );
    }
  }

  const cache = join(home, 'cache');
  mkdirSync(join(home, 'logs'), { recursive: true });
  mkdirSync(join(home, 'run'), { recursive: true });
  const [kafkaJava] = await Promise.all([
    findJava(17, `Kafka ${version}`),
    findJava(21, `Apicurio Registry ${APICURIO_VERSION}`),
  ]);
  say(
    `resolving Kafka ${version} and Apicurio Registry ${APICURIO_VERSION} (Maven Central, cached after the first run)`,
  );
  const [classpath] = await Promise.all([kafkaClasspath(cache, { version }), apicurioHome(cache)]);

  // Separate data for each cluster size (a 1-node and a 3-node cluster cannot share a quorum) and
  // each Kafka version (storage formatted by a newer release has a metadata version an older one
  // refuses to read).
  const clusterDir = join(home, `kafka-${version}-${n}node`);
  mkdirSync(clusterDir, { recursive: true });
  const clusterIdFile = join(clusterDir, 'cluster-id');
  if (!existsSync(clusterIdFile)) {
    const { stdout } = await run(kafkaJava.bin, ['-cp', classpath, 'kafka.tools.StorageTool', 'random-uuid']);
    writeFileSync(clusterIdFile, stdout.trim());
  }
  const clusterId = readFileSync(clusterIdFile, 'utf8').trim();

  const certificate = await stackCertificate(home);
  if (!certificate) say('openssl not found: the stack starts without its TLS listener');
  const processes: StackProcess[] = [];
  const started = Date.now();
  for (let id = 1; id <= n; id++) {
    const nodeDir = join(clusterDir, `node-${id}`);
    const dataDir = join(nodeDir, 'data');
    mkdirSync(dataDir, { recursive: true });
    const props = join(nodeDir, 'server.properties');
    writeFileSync(props, kafkaProperties(id, n, basePort, dataDir, certificate?.keystore));
    if (!existsSync(join(dataDir, 'meta.properties'))) {
      say(`formatting storage of node ${id}`);
      try {
        await run(kafkaJava.bin, [
          '-cp',
          classpath,
          'kafka.tools.StorageTool',
          'format',
          '-t',
          clusterId,
          '-c',
          props,
          '--ignore-formatted',
          ...['SCRAM-SHA-256', 'SCRAM-SHA-512'].flatMap((m) => [
            '--add-scram',
            `${m}=[name=${DEV_SASL_USER.username},password=${DEV_SASL_USER.password}]`,
          ]),
        ]);
      } catch (error) {
        throw new DevStackError(
          `formatting Kafka storage failed: ${String((error as { stderr?: string }).stderr ?? error).trim()}`,
        );
      }
    }
    const log = join(home, 'logs', `kafka-${id}.log`);
    writeFileSync(log, '');
    const args = [
      '-Xms256m',
      '-Xmx1g',
      '-XX:+UseG1GC',
      '-Djava.awt.headless=true',
      '-Dorg.slf4j.simpleLogger.showDateTime=true',
      '-cp',
      classpath,
      'kafka.Kafka',
      props,
    ];
    const pid = spawnJava(home, kafkaJava.bin, args, log, nodeDir);
    processes.push({
      name: `kafka-${id}`,
      pid,
      port: kafkaPorts[id - 1]!,
      log,
      startedAt: started,
      command: { java: kafkaJava.bin, args, cwd: nodeDir },
    });
  }

  const registryLog = join(home, 'logs', 'registry.log');
  writeFileSync(registryLog, '');
  const registry = await registryCommand(home, registryPort);
  processes.push({
    name: 'registry',
    pid: spawnJava(home, registry.java, registry.args, registryLog, registry.cwd),
    port: registryPort,
    log: registryLog,
    startedAt: started,
    command: registry,
  });

  const info: StackInfo = {
    brokers: kafkaPorts.map((p) => `127.0.0.1:${p}`),
    registryUrl: `http://127.0.0.1:${registryPort}/apis/ccompat/v7`,
    kafkaVersion: version,
    registryVersion: APICURIO_VERSION,
    processes,
    startedAt: started,
    sasl: {
      brokers: saslPorts.map((p) => `127.0.0.1:${p}`),
      mechanism: 'scram-sha-256',
      ...DEV_SASL_USER,
    },
    ...(certificate
      ? { tls: { brokers: tlsPorts.map((p) => `127.0.0.1:${p}`), caFile: certificate.caFile } }
      : {}),
  };
  // Written before waiting, so `down` can stop a stack whose start failed half-way.
  writeFileSync(stateFile(home), JSON.stringify(info, null, 2));
  try {
    say('waiting for Kafka and the registry to answer');
    await Promise.all([
      waitFor(
        'Kafka',
        () => kafkaReady(info.brokers, n),
        processes.filter((p) => p.name.startsWith('kafka')),
        home,
        120_000,
      ),
      waitFor(
        'schema registry',
        () => registryReady(info.registryUrl),
        processes.filter((p) => p.name === 'registry'),
        home,
        120_000,
      ),
    ]);
    await ensureSaslUser(info, kafkaJava.bin, classpath);
  } catch (error) {
    await stackDown({ home });
    throw error;
  }
  return { info, alreadyRunning: false, started: processes.map((p) => p.name) };
}

/** The ports a stack process listens on, as its start configured them. */
function portsOf(info: StackInfo, p: StackProcess): number[] {
  if (p.name === 'registry') return [p.port, p.port + 1];
  const n = info.brokers.length;
  const basePort = Number(info.brokers[0]?.split(':').pop());
  const id = Number(p.name.slice('kafka-'.length));
  return [p.port, p.port + 1, saslPort(basePort, n, id), ...(info.tls ? [tlsPort(basePort, n, id)] : [])];
}

/**
 * Starts the processes of a running stack that are down, each with the command it was first
 * started with, and waits until their part answers. Returns their names. On failure it stops only
 * what it started.
 */
async function startStopped(
  home: string,
  info: StackInfo,
  alive: boolean[],
  say: (line: string) => void,
): Promise<string[]> {
  const down = info.processes.filter((_, i) => !alive[i]);
  const running = info.processes.filter((_, i) => alive[i]);
  say(
    `${down.map((p) => p.name).join(', ')} not running: starting only that; ${running.map((p) => `${p.name} (pid ${p.pid})`).join(', ')} keep${running.length === 1 ? 's' : ''} running`,
  );
  for (const p of down) {
    for (const port of portsOf(info, p)) {
      if (!(await portFree(port))) {
        throw new DevStackError(
          `port ${port} on 127.0.0.1 is in use by another process, so ${p.name} cannot start; stop that process, or run "strand dev down" and "strand dev up" with other ports`,
        );
      }
    }
  }
  for (const p of down) {
    // A state written by an older Strand has no command for the registry: it is the same each time.
    const command = p.command ?? (p.name === 'registry' ? await registryCommand(home, p.port) : undefined);
    if (!command)
      throw new DevStackError(`${p.name} has no recorded command; run "strand dev down" and "strand dev up"`);
    p.command = command;
    appendFileSync(p.log, `\n--- started again by "strand dev up" at ${new Date().toISOString()} ---\n`);
    p.pid = spawnJava(home, command.java, command.args, p.log, command.cwd);
    p.startedAt = Date.now();
  }
  writeFileSync(stateFile(home), JSON.stringify(info, null, 2));
  const kafka = down.filter((p) => partOf(p) === 'kafka');
  const registry = down.filter((p) => partOf(p) === 'registry');
  try {
    await Promise.all([
      kafka.length
        ? waitFor('Kafka', () => kafkaReady(info.brokers, info.brokers.length), kafka, home, 120_000)
        : undefined,
      registry.length
        ? waitFor('schema registry', () => registryReady(info.registryUrl), registry, home, 120_000)
        : undefined,
    ]);
  } catch (error) {
    await Promise.all(down.map((p) => stopPid(p.pid, home, 20_000)));
    throw error;
  }
  return down.map((p) => p.name);
}

async function stopPid(pid: number, home: string, timeoutMs: number): Promise<void> {
  if (!isOurProcess(pid, home)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return;
  }
  const deadline = Date.now() + timeoutMs;
  while (isOurProcess(pid, home) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
  if (isOurProcess(pid, home)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
    while (isOurProcess(pid, home)) await new Promise((r) => setTimeout(r, 100));
  }
}

/** Stops only the processes this home started (checked by their command-line marker). */
export async function stackDown(
  opts: { home?: string; timeoutMs?: number } = {},
): Promise<{ stopped: string[] }> {
  const home = stackHome(opts.home);
  const state = readState(home);
  if (!state) return { stopped: [] };
  const stopped: string[] = [];
  // Registry first, then brokers together so the quorum shuts down cleanly.
  const registry = state.processes.filter((p) => p.name === 'registry');
  const brokers = state.processes.filter((p) => p.name !== 'registry');
  for (const group of [registry, brokers]) {
    await Promise.all(
      group.map(async (p) => {
        if (isOurProcess(p.pid, home)) stopped.push(p.name);
        await stopPid(p.pid, home, opts.timeoutMs ?? 20_000);
      }),
    );
  }
  rmSync(stateFile(home), { force: true });
  return { stopped };
}

/** Stops one process of a running stack (chaos tests: kill a broker or the registry). */
export async function stopStackProcess(
  name: string,
  opts: { home?: string; signal?: 'SIGTERM' | 'SIGKILL' } = {},
): Promise<void> {
  const home = stackHome(opts.home);
  const p = readState(home)?.processes.find((x) => x.name === name);
  if (!p) throw new DevStackError(`no stack process named ${name}`);
  if (opts.signal === 'SIGKILL' && isOurProcess(p.pid, home)) process.kill(p.pid, 'SIGKILL');
  await stopPid(p.pid, home, 20_000);
}

/**
 * Starts again one stopped process of a running stack (chaos tests: a broker killed on purpose),
 * with the command it was first started with. Resolves when its port accepts connections.
 */
export async function restartStackProcess(
  name: string,
  opts: { home?: string; timeoutMs?: number } = {},
): Promise<StackProcess> {
  const home = stackHome(opts.home);
  const state = readState(home);
  const p = state?.processes.find((x) => x.name === name);
  if (!state || !p) throw new DevStackError(`no stack process named ${name}`);
  if (isOurProcess(p.pid, home)) return p;
  if (!p.command) throw new DevStackError(`${name} has no recorded command; restart the whole stack`);
  p.pid = spawnJava(home, p.command.java, p.command.args, p.log, p.command.cwd);
  p.startedAt = Date.now();
  writeFileSync(stateFile(home), JSON.stringify(state, null, 2));
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  while (await portFree(p.port)) {
    if (!isOurProcess(p.pid, home))
      throw new DevStackError(`${name} exited during restart; last lines of ${p.log}:\n${tail(p.log)}`);
    if (Date.now() > deadline)
      throw new DevStackError(`${name} did not listen on ${p.port} within the timeout`);
    await new Promise((r) => setTimeout(r, 200));
  }
  return p;
}
