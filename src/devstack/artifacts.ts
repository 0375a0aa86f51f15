import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DevStackError } from './errors.js';
import { ensureMaven } from './java.js';

const run = promisify(execFile);

/**
 * The Kafka release `strand dev up` runs unless `--kafka-version` or `STRAND_KAFKA_VERSION` names
 * another: the newest that passes the whole test suite here (docs/compatibility.md).
 */
export const DEFAULT_KAFKA_VERSION = '4.4.0';
/** The version a stack starts with when none is asked for: `STRAND_KAFKA_VERSION`, else the default. */
export const KAFKA_VERSION = process.env.STRAND_KAFKA_VERSION || DEFAULT_KAFKA_VERSION;

/**
 * The Kafka version to run: the one asked for, else `STRAND_KAFKA_VERSION`, else the default.
 * Checked for the form of a release (`4.1.2`), since it becomes a Maven version and a folder name.
 */
export function kafkaVersion(requested?: string): string {
  const version = requested || KAFKA_VERSION;
  if (!/^\d+\.\d+\.\d+$/.test(version)) {
    throw new DevStackError(
      `Kafka version "${version}": expected a release such as ${DEFAULT_KAFKA_VERSION}`,
    );
  }
  const major = Number(version.split('.')[0]);
  const minor = Number(version.split('.')[1]);
  // KRaft without ZooKeeper, SCRAM users at format time and the classic group protocol: 3.5 and later.
  if (major < 3 || (major === 3 && minor < 5)) {
    throw new DevStackError(`Kafka ${version}: the local stack runs Kafka 3.5 or later (KRaft with SCRAM)`);
  }
  return version;
}
/** 3.1.x is not served by Maven Central here; 3.3.3 is, and needs Java 21+. */
export const APICURIO_VERSION = process.env.STRAND_APICURIO_VERSION ?? '3.3.3';
const DEPENDENCY_PLUGIN = 'org.apache.maven.plugins:maven-dependency-plugin:3.8.1';

function kafkaPom(version: string, withTools: boolean): string {
  const dep = (g: string, a: string, v: string) =>
    `<dependency><groupId>${g}</groupId><artifactId>${a}</artifactId><version>${v}</version></dependency>`;
  const deps = [
    dep('org.apache.kafka', 'kafka_2.13', version),
    // Kafka's POM brings slf4j-api 1.7.x without a binding; exactly one binding keeps logs readable.
    dep('org.slf4j', 'slf4j-simple', '1.7.36'),
  ];
  if (withTools) deps.push(dep('org.apache.kafka', 'kafka-tools', version));
  return `<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
<groupId>dev.strand.devstack</groupId><artifactId>kafka-${withTools ? 'tools' : 'server'}</artifactId>
<version>${version}</version><packaging>pom</packaging>
<dependencies>${deps.join('')}</dependencies></project>
`;
}

async function mvn(args: string[], cwd: string, what: string): Promise<void> {
  await ensureMaven();
  try {
    await run('mvn', ['-q', '-B', ...args], { cwd, timeout: 20 * 60_000, maxBuffer: 64 * 1024 * 1024 });
  } catch (error) {
    const out =
      String((error as { stdout?: string }).stdout ?? '') +
      String((error as { stderr?: string }).stderr ?? '');
    const firstError = out.split('\n').find((l) => l.includes('ERROR')) ?? (error as Error).message;
    throw new DevStackError(`mvn could not resolve ${what}: ${firstError.replace(/\s+/g, ' ').trim()}`, {
      cause: error,
    });
  }
}

/**
 * Resolves the Kafka broker's classpath from Maven Central (cached in ~/.m2 and in
 * `<cacheDir>/kafka-<version>/cp.txt`) and returns it.
 */
export async function kafkaClasspath(
  cacheDir: string,
  opts: { tools?: boolean; version?: string } = {},
): Promise<string> {
  const withTools = opts.tools === true;
  const version = kafkaVersion(opts.version);
  const dir = join(cacheDir, `kafka-${withTools ? 'tools-' : ''}${version}`);
  const cpFile = join(dir, 'cp.txt');
  if (existsSync(cpFile)) {
    const cp = readFileSync(cpFile, 'utf8').trim();
    if (cp.split(':').every((jar) => existsSync(jar))) return cp;
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'pom.xml'), kafkaPom(version, withTools));
  await mvn(
    [`${DEPENDENCY_PLUGIN}:build-classpath`, '-Dmdep.outputFile=cp.txt', '-Dmdep.includeScope=runtime'],
    dir,
    `org.apache.kafka:kafka_2.13:${version}`,
  );
  return readFileSync(cpFile, 'utf8').trim();
}

/**
 * Fetches the Apicurio Registry runnable archive from Maven Central and unpacks it once.
 * Returns the directory holding `quarkus-run.jar`.
 */
export async function apicurioHome(cacheDir: string): Promise<string> {
  const dir = join(cacheDir, `apicurio-${APICURIO_VERSION}`);
  const runJar = join(dir, 'quarkus-run.jar');
  if (existsSync(runJar)) return dir;
  rmSync(dir, { recursive: true, force: true });
  const download = join(cacheDir, 'download');
  mkdirSync(download, { recursive: true });
  const artifact = `io.apicurio:apicurio-registry-app:${APICURIO_VERSION}:tar.gz:all`;
  // `copy` fetches only the archive; `get` would also walk the app's POM, which names
  // repositories other than Maven Central.
  await mvn(
    [`${DEPENDENCY_PLUGIN}:copy`, `-Dartifact=${artifact}`, `-DoutputDirectory=${download}`],
    download,
    artifact,
  );
  const archive = readdirSync(download).find((f) =>
    f.startsWith(`apicurio-registry-app-${APICURIO_VERSION}`),
  );
  if (!archive) throw new DevStackError(`mvn reported success but no archive for ${artifact} in ${download}`);
  const staging = `${dir}.partial`;
  rmSync(staging, { recursive: true, force: true });
  mkdirSync(staging, { recursive: true });
  try {
    await run('tar', ['xzf', join(download, archive), '-C', staging], { timeout: 10 * 60_000 });
  } catch (error) {
    throw new DevStackError(`could not unpack ${archive}: ${(error as Error).message}`, { cause: error });
  }
  renameSync(staging, dir);
  rmSync(join(download, archive), { force: true });
  if (!existsSync(runJar)) throw new DevStackError(`${archive} has no quarkus-run.jar`);
  return dir;
}
