import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';

/** Where the repository's Prometheus files live. */
export const PROMETHEUS_DIR = 'deploy/prometheus';

export interface ScrapeJob {
  job_name: string;
  [key: string]: unknown;
}

export interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  [key: string]: unknown;
}

/** deploy/prometheus/prometheus.yml as parsed. */
export function repositoryPrometheusConfig(): { rule_files: string[]; scrape_configs: ScrapeJob[] } {
  return parse(readFileSync(`${PROMETHEUS_DIR}/prometheus.yml`, 'utf8'));
}

/**
 * A config made of the repository's: its rule files (copied next to the config; `editRules` may
 * change the copies' rules, all files' at once), the `strand` job with `targets` as its static targets, and — only when
 * `kubernetesTargets` is given — the `strand-kubernetes` job's relabelling and keep rule applied to
 * static targets carrying the labels Kubernetes service discovery would set (Debian's prometheus
 * and promtool are built without it). Scrape and rule evaluation every `interval`.
 */
export function repositoryConfig(opts: {
  targets: string[];
  interval: string;
  kubernetesTargets?: { targets: string[]; labels: Record<string, string> }[];
  editRules?: (rules: Rule[]) => void;
}): { config: unknown; files: Record<string, string> } {
  const repo = repositoryPrometheusConfig();
  const job = (name: string) => {
    const j = repo.scrape_configs.find((c) => c.job_name === name);
    if (!j) throw new Error(`no ${name} job in ${PROMETHEUS_DIR}/prometheus.yml`);
    return j;
  };
  const { static_configs: _docker, ...strand } = job('strand');
  const { kubernetes_sd_configs: sd, ...kubernetes } = job('strand-kubernetes');
  if (!sd) throw new Error('the strand-kubernetes job has no kubernetes_sd_configs');
  const docs = repo.rule_files.map((name) => ({
    name,
    doc: parse(readFileSync(`${PROMETHEUS_DIR}/${name}`, 'utf8')) as { groups: { rules: Rule[] }[] },
  }));
  opts.editRules?.(docs.flatMap((d) => d.doc.groups.flatMap((g) => g.rules)));
  const files = Object.fromEntries(docs.map((d) => [d.name, stringify(d.doc)]));
  const scrapeConfigs: unknown[] = [{ ...strand, static_configs: [{ targets: opts.targets }] }];
  if (opts.kubernetesTargets) scrapeConfigs.push({ ...kubernetes, static_configs: opts.kubernetesTargets });
  return {
    config: {
      global: { scrape_interval: opts.interval, evaluation_interval: opts.interval },
      rule_files: repo.rule_files,
      scrape_configs: scrapeConfigs,
    },
    files,
  };
}

/** Writes `config` as prometheus.yml with `files` next to it in a new temporary directory. */
function writeConfig(config: unknown, files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'strand-prometheus-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  writeFileSync(join(dir, 'prometheus.yml'), stringify(config));
  return dir;
}

/** `promtool check config` (which checks the rule files too) on `config` and `files`. */
export function checkConfig(config: unknown, files: Record<string, string>): { code: number; out: string } {
  const dir = writeConfig(config, files);
  try {
    return promtool(['check', 'config', join(dir, 'prometheus.yml')]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Throws a one-line reason when `prometheus` or `promtool` is missing: the operations tests need
 * the real thing (CI installs Debian's `prometheus` package in .ci/run), so they fail, not skip.
 */
export function requirePrometheusTools(): void {
  for (const tool of ['prometheus', 'promtool']) {
    const r = spawnSync(tool, ['--version'], { encoding: 'utf8' });
    if (r.error)
      throw new Error(
        `${tool} not found on PATH: install it with "apt-get install prometheus" (.ci/run does) to run the operations tests`,
      );
    if (r.status !== 0)
      throw new Error(`${tool} --version failed (exit ${r.status}): ${`${r.stderr}`.trim().split('\n')[0]}`);
  }
}

/** Runs `promtool` with `args` (cwd `cwd`), returning its exit code and output. */
export function promtool(args: string[], cwd?: string): { code: number; out: string } {
  const r = spawnSync('promtool', args, { cwd, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status ?? -1, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

/** A port free on 127.0.0.1 right now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (!address || typeof address === 'string') throw new Error('no port');
  return address.port;
}

export interface VectorSample {
  metric: Record<string, string>;
  value: number;
}

export interface PrometheusAlert {
  labels: Record<string, string>;
  state: 'pending' | 'firing';
  value: number;
}

/** A Prometheus server of one test: its own port, data directory and config; `stop` removes all. */
export class PrometheusServer {
  private log = '';
  /** Resolves with the exit code when the process ends. */
  readonly exited: Promise<number | null>;

  private constructor(
    readonly url: string,
    readonly dir: string,
    private readonly child: ChildProcess,
  ) {
    child.stdout?.on('data', (d) => this.append(d));
    child.stderr?.on('data', (d) => this.append(d));
    child.on('error', (e) => this.append(Buffer.from(`${e.message}\n`)));
    this.exited = new Promise((resolve) => child.once('exit', resolve));
  }

  private append(d: Buffer): void {
    this.log = (this.log + d.toString()).slice(-20_000);
  }

  /**
   * Writes `config` (and `files`, named relative to it) to a new temporary directory and starts
   * `prometheus` with a data directory there, on `address` (default: 127.0.0.1 and a free port);
   * resolves once `/-/ready` answers. `echo` copies its output to stderr.
   */
  static async start(
    config: unknown,
    files: Record<string, string> = {},
    opts: { address?: string; echo?: boolean } = {},
  ): Promise<PrometheusServer> {
    const dir = writeConfig(config, files);
    const address = opts.address ?? `127.0.0.1:${await freePort()}`;
    const child = spawn(
      'prometheus',
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=${address}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    if (opts.echo) {
      child.stdout.pipe(process.stderr);
      child.stderr.pipe(process.stderr);
    }
    const server = new PrometheusServer(`http://${address}`, dir, child);
    const exited = server.exited;
    const deadline = Date.now() + 30_000;
    for (;;) {
      const code = await Promise.race([exited, new Promise((r) => setTimeout(r, 200, 'running'))]);
      if (code !== 'running') {
        rmSync(dir, { recursive: true, force: true });
        throw new Error(`prometheus exited (${code}) at start: ${server.log.trim().split('\n').pop()}`);
      }
      const ready = await fetch(`${server.url}/-/ready`).then(
        (r) => r.ok,
        () => false,
      );
      if (ready) return server;
      if (Date.now() > deadline) {
        await server.stop();
        throw new Error(`prometheus not ready after 30 s: ${server.log.trim().split('\n').pop()}`);
      }
    }
  }

  private async api<T>(path: string, params: Record<string, string> = {}): Promise<T> {
    const res = await fetch(`${this.url}/api/v1/${path}?${new URLSearchParams(params)}`);
    const body = (await res.json()) as { status: string; data: T; error?: string };
    if (body.status !== 'success')
      throw new Error(`prometheus ${path} ${JSON.stringify(params)}: ${body.error}`);
    return body.data;
  }

  /** An instant query (now); scalar results come back as one sample without labels. */
  async query(expr: string): Promise<VectorSample[]> {
    const data = await this.api<{ resultType: string; result: unknown }>('query', { query: expr });
    if (data.resultType === 'scalar')
      return [{ metric: {}, value: Number((data.result as [number, string])[1]) }];
    if (data.resultType !== 'vector') throw new Error(`${expr}: ${data.resultType}, not a vector`);
    return (data.result as { metric: Record<string, string>; value: [number, string] }[]).map((r) => ({
      metric: r.metric,
      value: Number(r.value[1]),
    }));
  }

  async alerts(): Promise<PrometheusAlert[]> {
    const data = await this.api<{
      alerts: { labels: Record<string, string>; state: string; value: string }[];
    }>('alerts');
    return data.alerts.map((a) => ({
      labels: a.labels,
      state: a.state as PrometheusAlert['state'],
      value: Number(a.value),
    }));
  }

  async targets(): Promise<{
    activeTargets: { labels: Record<string, string>; health: string; lastError: string }[];
    droppedTargets: { discoveredLabels: Record<string, string> }[];
  }> {
    return this.api('targets');
  }

  /** SIGTERM (SIGKILL after 5 s), then removes the data directory. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
      await this.exited;
      clearTimeout(timer);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
