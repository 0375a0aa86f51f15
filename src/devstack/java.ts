import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DevStackError } from './errors.js';

const run = promisify(execFile);

/** A Java runtime found on this machine. */
export interface JavaRuntime {
  readonly bin: string;
  readonly major: number;
}

async function javaMajor(bin: string): Promise<number | undefined> {
  try {
    const { stderr, stdout } = await run(bin, ['-version'], { timeout: 15_000 });
    const match = /version "(\d+)(?:\.(\d+))?/.exec(stderr + stdout);
    if (!match) return undefined;
    const first = Number(match[1]);
    // Java 8 and older report "1.8.0_x".
    return first === 1 ? Number(match[2]) : first;
  } catch {
    return undefined;
  }
}

function candidateJavaBins(): string[] {
  const bins: string[] = [];
  const fromEnv = [process.env.STRAND_JAVA_HOME, process.env.JAVA_HOME].filter(
    (v): v is string => typeof v === 'string' && v.length > 0,
  );
  for (const home of fromEnv) bins.push(join(home, 'bin', 'java'));
  bins.push('java');
  const jvmDir = '/usr/lib/jvm';
  if (existsSync(jvmDir)) {
    for (const entry of readdirSync(jvmDir).sort().reverse()) {
      const bin = join(jvmDir, entry, 'bin', 'java');
      if (existsSync(bin)) bins.push(bin);
    }
  }
  return [...new Set(bins)];
}

/**
 * Finds a Java runtime of at least `minMajor`. Kafka 4.x needs 17; the Apicurio Registry 3.3 line
 * needs 21, which on Debian 12 usually means the Temurin JDK under /usr/lib/jvm rather than the
 * default `java`.
 */
export async function findJava(minMajor: number, purpose: string): Promise<JavaRuntime> {
  const seen: string[] = [];
  for (const bin of candidateJavaBins()) {
    const major = await javaMajor(bin);
    if (major === undefined) continue;
    seen.push(`${bin} (${major})`);
    if (major >= minMajor) return { bin, major };
  }
  if (seen.length === 0) {
    throw new DevStackError(
      `java not found: ${purpose} needs Java ${minMajor}+ (install a JDK, e.g. apt-get install openjdk-17-jre-headless, or set JAVA_HOME)`,
    );
  }
  throw new DevStackError(
    `${purpose} needs Java ${minMajor}+, found only ${seen.join(', ')}; install a newer JDK or set STRAND_JAVA_HOME`,
  );
}

/** Checks that Maven answers; the stack's jars come from Maven Central through it. */
export async function ensureMaven(): Promise<void> {
  try {
    await run('mvn', ['-v'], { timeout: 30_000 });
  } catch {
    throw new DevStackError(
      'mvn not found: the local stack resolves Kafka and the registry from Maven Central (apt-get install maven)',
    );
  }
}
