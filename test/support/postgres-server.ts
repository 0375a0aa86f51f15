import { execFile, spawnSync } from 'node:child_process';
import {
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { freePort } from './ports.js';

const run = promisify(execFile);

/** How to reach a PostgreSQL for tests; plain data, so a vitest global setup can `provide` it. */
export interface PostgresInfo {
  /** `postgres://user[:password]@host:port/database` */
  url: string;
  host: string;
  port: number;
  user: string;
  password?: string;
  database: string;
  /** The server's `wal_level` (`logical` is what logical decoding needs). */
  walLevel: string;
  /** `env`: STRAND_TEST_DATABASE_URL or PG*; `running`: one that answered; `started`: a throwaway server. */
  source: 'env' | 'running' | 'started';
}

/** A PostgreSQL in use by tests; `stop` ends and deletes a throwaway server, and is a no-op otherwise. */
export interface TestPostgres extends PostgresInfo {
  stop(): Promise<void>;
  /**
   * A throwaway server only: stops it (`immediate`: as a crash, every connection cut, recovery at
   * the start; `fast`: a clean shutdown) and starts it again on the same port and data.
   */
  restart?(mode?: 'immediate' | 'fast'): Promise<void>;
}

/** Why there is no PostgreSQL for the tests (one line, shown as the skip reason). */
export interface PostgresMissing {
  missing: string;
}

export interface UsePostgresOptions {
  /** `logical`: a server answering with a lower `wal_level` is not used; a throwaway one is started. */
  walLevel?: 'logical';
  /** Do not look for a running server: always start a throwaway one (or say why not). */
  fresh?: boolean;
}

/** Throwaway servers are made in `<tmpdir>/strand-pg-*`; `owner.pid` names the process that made one (pid and start time). */
const DIR_PREFIX = 'strand-pg-';

/** The PG* variables a child process (a worker module using `pg`) needs to reach `info`. */
export function pgEnv(info: PostgresInfo): Record<string, string> {
  return {
    PGHOST: info.host,
    PGPORT: String(info.port),
    PGUSER: info.user,
    PGDATABASE: info.database,
    ...(info.password !== undefined ? { PGPASSWORD: info.password } : {}),
  };
}

/** A `pg.Pool` on `info` (the caller ends it). */
export function pgPool(info: PostgresInfo, config: pg.PoolConfig = {}): pg.Pool {
  return new pg.Pool({ connectionString: info.url, ...config });
}

function connectionUrl(c: { host: string; port: number; user: string; password?: string; database: string }) {
  const auth =
    encodeURIComponent(c.user) + (c.password !== undefined ? `:${encodeURIComponent(c.password)}` : '');
  return `postgres://${auth}@${c.host}:${c.port}/${encodeURIComponent(c.database)}`;
}

/**
 * Where to look for a running server: STRAND_TEST_DATABASE_URL, else the PG* variables, else
 * 127.0.0.1:5432 as user `postgres`, database `postgres` (a Debian package's defaults).
 */
function candidate(): { config: pg.ClientConfig; source: 'env' | 'running'; where: string } {
  const url = process.env.STRAND_TEST_DATABASE_URL;
  if (url) return { config: { connectionString: url }, source: 'env', where: 'STRAND_TEST_DATABASE_URL' };
  const e = process.env;
  const fromEnv = Boolean(e.PGHOST || e.PGPORT || e.PGUSER || e.PGDATABASE);
  const host = e.PGHOST ?? '127.0.0.1';
  const port = Number(e.PGPORT ?? 5432);
  return {
    config: {
      host,
      port,
      user: e.PGUSER ?? 'postgres',
      database: e.PGDATABASE ?? 'postgres',
      ...(e.PGPASSWORD !== undefined ? { password: e.PGPASSWORD } : {}),
    },
    source: fromEnv ? 'env' : 'running',
    where: `${host}:${port}${fromEnv ? ' (PG* variables)' : ''}`,
  };
}

/** Connects, reads `wal_level`, disconnects; the failure's one-line reason otherwise. */
async function probe(config: pg.ClientConfig): Promise<{ walLevel: string } | { error: string }> {
  const client = new pg.Client({ ...config, connectionTimeoutMillis: 2000 });
  // A server that goes away after the connect emits 'error' on the client; never let it crash us.
  client.on('error', () => undefined);
  try {
    await client.connect();
    const { rows } = await client.query<{ wal_level: string }>('SHOW wal_level');
    return { walLevel: rows[0]?.wal_level ?? 'unknown' };
  } catch (error) {
    const e = error as { code?: string; message?: string };
    return { error: (e.message || e.code || String(error)).split('\n')[0]! };
  } finally {
    await client.end().catch(() => undefined);
  }
}

function infoOf(client: pg.Client, walLevel: string, source: PostgresInfo['source']): PostgresInfo {
  const c = {
    host: client.host,
    port: client.port,
    user: client.user ?? 'postgres',
    database: client.database ?? 'postgres',
    ...(typeof client.password === 'string' ? { password: client.password } : {}),
  };
  return { ...c, url: connectionUrl(c), walLevel, source };
}

/**
 * A directory holding `initdb` and `pg_ctl`: STRAND_TEST_PG_BIN, else the PATH, else the newest
 * `/usr/lib/postgresql/<version>/bin` (Debian installs them there, off the PATH).
 */
export function findPostgresBin(): string | undefined {
  const has = (dir: string) => existsSync(join(dir, 'initdb')) && existsSync(join(dir, 'pg_ctl'));
  const own = process.env.STRAND_TEST_PG_BIN;
  if (own) return has(own) ? own : undefined;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) if (dir && has(dir)) return dir;
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => /^\d+(\.\d+)?$/.test(v))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  for (const v of versions) if (has(join(root, v, 'bin'))) return join(root, v, 'bin');
  return undefined;
}

/**
 * PostgreSQL refuses to run as root: as root, the server and its tools run as `postgres` (the
 * package's user) or else `nobody`, through `runuser`.
 */
function serverUser(): { name: string; uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  for (const name of ['postgres', 'nobody']) {
    const id = spawnSync('id', ['-u', name], { encoding: 'utf8' });
    const gid = spawnSync('id', ['-g', name], { encoding: 'utf8' });
    if (id.status === 0 && gid.status === 0) return { name, uid: Number(id.stdout), gid: Number(gid.stdout) };
  }
  throw new Error(
    'running as root and there is neither a "postgres" nor a "nobody" user to run PostgreSQL as',
  );
}

function asUser(user: { name: string } | undefined, bin: string, args: string[]): [string, string[]] {
  return user ? ['runuser', ['-u', user.name, '--', bin, ...args]] : [bin, args];
}

/**
 * A process by pid and start time (field 22 of /proc/<pid>/stat), so a pid the system reused for
 * another process does not pass for the owner; just the pid where there is no /proc.
 */
function processStamp(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    return `${pid} ${stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? ''}`;
  } catch {
    return String(pid);
  }
}

function ownerAlive(stamp: string): boolean {
  const pid = Number(stamp.split(' ')[0]);
  if (!pid) return false;
  try {
    process.kill(pid, 0);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  return !stamp.includes(' ') || processStamp(pid) === stamp;
}

/**
 * Stops and deletes throwaway servers whose owner process is gone (a test run killed before its
 * teardown), so they do not pile up.
 */
function reapOrphans(bin: string, user: { name: string } | undefined): void {
  for (const name of readdirSync(tmpdir()).filter((n) => n.startsWith(DIR_PREFIX))) {
    const dir = join(tmpdir(), name);
    let owner: string;
    try {
      owner = readFileSync(join(dir, 'owner.pid'), 'utf8').trim();
    } catch {
      continue; // not ours
    }
    if (ownerAlive(owner)) continue;
    const [cmd, args] = asUser(user, join(bin, 'pg_ctl'), [
      'stop',
      '-D',
      join(dir, 'data'),
      '-m',
      'immediate',
      '-s',
    ]);
    spawnSync(cmd, args, { stdio: 'ignore', timeout: 10_000 });
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Starts a throwaway PostgreSQL: `initdb` into a new folder under the temp dir (trust auth, user
 * `postgres`), `pg_ctl start` on a free loopback port with `wal_level=logical` (so logical-decoding
 * tests can use it too) and fsync off. `stop` stops it and deletes the folder; so does the end of
 * this process, and the next start reaps servers whose process died without either.
 */
export async function startPostgres(opts: { bin?: string } = {}): Promise<TestPostgres> {
  const bin = opts.bin ?? findPostgresBin();
  if (!bin) throw new Error('no initdb/pg_ctl found (PATH, /usr/lib/postgresql/*/bin, STRAND_TEST_PG_BIN)');
  const user = serverUser();
  reapOrphans(bin, user);
  const dir = mkdtempSync(join(tmpdir(), DIR_PREFIX));
  const data = join(dir, 'data');
  const log = join(dir, 'server.log');
  writeFileSync(join(dir, 'owner.pid'), processStamp(process.pid));
  if (user) chownSync(dir, user.uid, user.gid);
  const pgCtl = (args: string[], timeout = 60_000) => {
    const [cmd, full] = asUser(user, join(bin, 'pg_ctl'), args);
    return run(cmd, full, { timeout });
  };
  let started = false;
  // Synchronous, so it can run in an 'exit' handler.
  const stopNow = () => {
    if (started) {
      const [cmd, args] = asUser(user, join(bin, 'pg_ctl'), [
        'stop',
        '-D',
        data,
        '-m',
        'immediate',
        '-w',
        '-s',
      ]);
      spawnSync(cmd, args, { stdio: 'ignore', timeout: 30_000 });
      started = false;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const onExit = () => stopNow();
  // A run stopped by a signal emits no 'exit': stop the server first, then let the signal act.
  const onSignal = (signal: NodeJS.Signals) => {
    stopNow();
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  const unhook = () => {
    process.off('exit', onExit);
    for (const s of signals) process.off(s, onSignal);
  };
  process.once('exit', onExit);
  for (const s of signals) process.once(s, onSignal);
  try {
    const [initdb, initArgs] = asUser(user, join(bin, 'initdb'), [
      '-D',
      data,
      '-U',
      'postgres',
      '--auth=trust',
      '--encoding=UTF8',
      '--no-sync',
      '--no-instructions',
    ]);
    await run(initdb, initArgs, { timeout: 120_000 });
    const port = await freePort();
    const settings = [
      `-p ${port}`,
      `-k ${dir}`, // its socket in its own folder: the default socket dir may not be writable
      '-c listen_addresses=127.0.0.1',
      '-c wal_level=logical',
      '-c max_replication_slots=10',
      '-c max_wal_senders=10',
      '-c fsync=off',
      '-c full_page_writes=off',
    ].join(' ');
    started = true;
    await pgCtl(['start', '-D', data, '-l', log, '-w', '-s', '-t', '60', '-o', settings]);
    const c = { host: '127.0.0.1', port, user: 'postgres', database: 'postgres' };
    const answered = await probe(c);
    if ('error' in answered) throw new Error(`the throwaway PostgreSQL does not answer: ${answered.error}`);
    return {
      ...c,
      url: connectionUrl(c),
      walLevel: answered.walLevel,
      source: 'started',
      stop: async () => {
        unhook();
        if (started) await pgCtl(['stop', '-D', data, '-m', 'fast', '-w', '-s']).catch(() => undefined);
        started = false;
        stopNow();
      },
      restart: async (mode = 'immediate') => {
        await pgCtl(['stop', '-D', data, '-m', mode, '-w', '-s']);
        await pgCtl(['start', '-D', data, '-l', log, '-w', '-s', '-t', '60', '-o', settings]);
      },
    };
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    const logTail = existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').slice(-3).join(' | ') : '';
    unhook();
    stopNow();
    const why = (e.stderr?.trim() || e.message).split('\n')[0];
    throw new Error(`starting a throwaway PostgreSQL failed: ${why}${logTail ? ` (log: ${logTail})` : ''}`);
  }
}

/**
 * A PostgreSQL for tests: one that answers (STRAND_TEST_DATABASE_URL, else the PG* variables, else
 * 127.0.0.1:5432 as `postgres`), else a throwaway server (`startPostgres`) when `initdb`/`pg_ctl`
 * are found, else the one-line reason there is none. `walLevel: 'logical'` passes over a running
 * server with a lower `wal_level`. Call `stop()` when done (a no-op unless it was started here).
 */
export async function usePostgres(opts: UsePostgresOptions = {}): Promise<TestPostgres | PostgresMissing> {
  let why = '';
  if (!opts.fresh) {
    const c = candidate();
    const answered = await probe(c.config);
    if ('walLevel' in answered && (opts.walLevel !== 'logical' || answered.walLevel === 'logical')) {
      const client = new pg.Client(c.config);
      return { ...infoOf(client, answered.walLevel, c.source), stop: async () => undefined };
    }
    why =
      'walLevel' in answered
        ? `PostgreSQL at ${c.where} has wal_level=${answered.walLevel}, not logical`
        : `no PostgreSQL at ${c.where} (${answered.error})`;
    // An address the user named explicitly is not silently replaced by another server.
    if (c.source === 'env' && !('walLevel' in answered)) return { missing: why };
  }
  const bin = findPostgresBin();
  if (!bin) {
    return {
      missing: `${why ? `${why} and ` : ''}no initdb/pg_ctl on the PATH or under /usr/lib/postgresql/*/bin to start one (apt-get install postgresql)`,
    };
  }
  try {
    return await startPostgres({ bin });
  } catch (error) {
    return { missing: `${why ? `${why}; ` : ''}${(error as Error).message}` };
  }
}

/**
 * For a vitest global setup: provides `postgres` (what `usePostgres` found or started, or why there
 * is none) to every test file, so they share one server; returns it to stop in the teardown.
 */
export async function providePostgres(project: TestProject): Promise<TestPostgres | undefined> {
  const found = await usePostgres();
  if ('missing' in found) {
    project.provide('postgres', found);
    process.stderr.write(`[postgres] the tests that need PostgreSQL are skipped: ${found.missing}\n`);
    return undefined;
  }
  const { stop: _stop, restart: _restart, ...info } = found;
  project.provide('postgres', info);
  if (found.source === 'started')
    process.stderr.write(
      `[postgres] started a throwaway PostgreSQL on 127.0.0.1:${found.port} for this run\n`,
    );
  return found;
}
