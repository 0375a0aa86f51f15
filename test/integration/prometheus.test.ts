import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import pg from 'pg';
import client from 'prom-client';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { createKafka } from '../../src/kafka/client.js';
import { createLogger } from '../../src/observability/logger.js';
import { Outbox } from '../../src/outbox/outbox.js';
import { OutboxRelay } from '../../src/outbox/relay.js';
import { migrateOutbox } from '../../src/outbox/table.js';
import { topicNames } from '../../src/topology/topics.js';
import { Worker } from '../../src/worker/worker.js';
import { jobTopic, stack, uniqueName, waitUntil } from '../support/helpers.js';
import { enqueuePayments, type Payment, paymentSchema } from '../support/jobs.js';
import { skipWhenMissing } from '../support/optional.js';
import { needPostgres, testPostgres } from '../support/postgres.js';
import {
  PROMETHEUS_DIR as DIR,
  PrometheusServer,
  promtool,
  type Rule,
  repositoryConfig,
  repositoryPrometheusConfig,
  requirePrometheusTools,
  type VectorSample,
} from '../support/prometheus.js';

/**
 * deploy/ proven with a real Prometheus (Debian's `prometheus` 2.42 and `promtool`; docs/operations.md):
 * the alert unit tests, the repository's scrape job and relabelling against a running worker and
 * `strand exporter`, the recording rules the autoscalers read, the DLQ alert, and every dashboard query.
 */

const read = (path: string) => readFileSync(path, 'utf8');

const alertRules = (parse(read(`${DIR}/alerts.yml`)) as { groups: { rules: Rule[] }[] }).groups.flatMap(
  (g) => g.rules,
);

/** Lag from the admin client alone: end offset − committed (− log start without a commit), by topic/partition. */
async function adminLag(groupId: string, topics: string[]): Promise<Map<string, number>> {
  const admin = createKafka(stack().connection).admin();
  await admin.connect();
  try {
    const out = new Map<string, number>();
    const committed = await admin.fetchOffsets({ groupId, topics });
    for (const topic of topics) {
      const c = committed.find((x) => x.topic === topic);
      for (const o of await admin.fetchTopicOffsets(topic)) {
        const at = Number(c?.partitions.find((p) => p.partition === o.partition)?.offset ?? -1);
        out.set(`${topic}/${o.partition}`, Number(o.high) - (at >= 0 ? at : Number(o.low)));
      }
    }
    return out;
  } finally {
    await admin.disconnect();
  }
}

const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);

/** The one value of a query that must return exactly one sample. */
function one(samples: VectorSample[], expr: string): number {
  if (samples.length !== 1) throw new Error(`${expr}: ${samples.length} samples, not 1`);
  return samples[0]!.value;
}

describe('deploy/prometheus with a real Prometheus', () => {
  const JOBS = 2100; // 100 of them poison (dead-lettered), one fails once (retried through the tier)
  const POISON = (i: number) => i % 21 === 3;
  let topic: string;
  let tier: string;
  let groupId: string;
  let cleanupTopic: (() => Promise<void>) | undefined;
  let worker: Worker<Payment> | undefined;
  let exporter: ChildProcess | undefined;
  let prom: PrometheusServer | undefined;
  let release: () => void = () => undefined;
  let workerAddr: string;
  let exporterAddr: string;
  const done = { completed: 0, dead: 0 };
  // The outbox panels: a relay (its own /metrics) publishing rows of a table to a topic of its own.
  const outbox: {
    pool?: pg.Pool;
    table?: string;
    relay?: OutboxRelay;
    writer?: Outbox<Payment>;
    cleanupTopic?: () => Promise<void>;
    written: number;
  } = { written: 0 };
  const writeOutbox = async (n: number) => {
    for (let i = 0; i < n; i++, outbox.written++)
      await outbox.writer!.enqueue(outbox.pool!, {
        key: `acct-${outbox.written % 5}`,
        data: {
          paymentId: `ob-${outbox.written}`,
          accountId: `acct-${outbox.written % 5}`,
          amountCents: 100,
          currency: 'EUR',
          sequence: outbox.written,
          createdAt: Date.now(),
          memo: null,
        },
      });
  };

  // Without prometheus/promtool every test is skipped with the one-line reason (fails in CI).
  let missing: string | undefined;
  beforeEach((ctx) => skipWhenMissing(ctx, missing));
  const server = (): PrometheusServer => {
    if (missing) throw new Error(missing);
    return prom!;
  };

  beforeAll(async () => {
    try {
      requirePrometheusTools();
    } catch (error) {
      missing = (error as Error).message;
      return;
    }
    ({ topic, cleanup: cleanupTopic } = await jobTopic('prom', { partitions: 3, tierDelays: [300] }));
    tier = topicNames(topic, 1).tiers[0]!;
    groupId = uniqueName('prom-g');
    await enqueuePayments(topic, JOBS, 60, {
      memo: (i) => (POISON(i) ? 'poison' : i === 5 ? 'fail-once' : null),
    });

    const gate = new Promise<void>((r) => (release = r));
    worker = new Worker<Payment>({
      brokers: stack().brokers,
      registry: { url: stack().registryUrl },
      topic,
      groupId,
      concurrency: 8,
      retry: { inPlace: 0, tiers: [300], maxAttempts: 3 },
      metrics: { port: 0, host: '127.0.0.1' },
      lagIntervalMs: 300,
      // The HPA's numbers (deploy/kubernetes/hpa.yaml); a short scale-down window so the signal
      // follows the lag down within the test.
      autoscale: { targetLagPerReplica: 500, minReplicas: 3, maxReplicas: 50, scaleDownWindowMs: 1000 },
      status: false,
      logger: createLogger({ level: 'error' }),
      handler: async (job) => {
        await gate;
        gatewayCalls.inc();
        if (job.data.memo === 'poison') throw new TypeError('amount is not a number');
        if (job.data.memo === 'fail-once' && job.attempt === 1) throw new Error('gateway timeout');
      },
    });
    // An application metric in the worker's registry: served on /metrics, dropped by the relabelling.
    const gatewayCalls = new client.Counter({
      name: 'payments_gateway_calls_total',
      help: 'Calls to the payment gateway',
      registers: [worker.metrics.registry],
    });
    worker.on('job:completed', () => void done.completed++);
    worker.on('job:dead', () => void done.dead++);

    exporter = spawn(
      process.execPath,
      [
        'dist/cli/main.js',
        'exporter',
        ...['--group', groupId, '--topic', topic, '--retry-tiers', '300ms'],
        ...['--port', '0', '--host', '127.0.0.1', '--interval', '300'],
        ...['--target-lag-per-replica', '500', '--min-replicas', '3', '--max-replicas', '50'],
      ],
      {
        env: { ...process.env, STRAND_BROKERS: stack().brokers.join(',') },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    exporter.stdout!.on('data', (d) => (out += d));
    exporter.stderr!.on('data', (d) => (out += d));
    await worker.start();
    workerAddr = `127.0.0.1:${worker.metricsPort}`;
    const db = testPostgres();
    const targets: string[] = [];
    if (db) {
      const made = await jobTopic('prom-outbox', { partitions: 2 });
      outbox.cleanupTopic = made.cleanup;
      outbox.pool = new pg.Pool({ connectionString: db.url, max: 2 });
      outbox.table = uniqueName('prom_outbox').replace(/-/g, '_');
      await migrateOutbox(outbox.pool, outbox.table);
      outbox.writer = new Outbox<Payment>({ topic: made.topic, schema: paymentSchema, table: outbox.table });
      await writeOutbox(20);
      outbox.relay = new OutboxRelay({
        databaseUrl: db.url,
        brokers: stack().brokers,
        registry: { url: stack().registryUrl },
        table: outbox.table,
        statsIntervalMs: 500,
        metrics: { port: 0, host: '127.0.0.1' },
        logger: createLogger({ level: 'error' }),
      });
      await outbox.relay.start();
      targets.push(`127.0.0.1:${outbox.relay.metricsPort}`);
    }
    exporterAddr = await waitUntil(() => /http:\/\/(\S+)\/metrics/.exec(out)?.[1], {
      timeoutMs: 30_000,
      what: `strand exporter's URL (output: ${out})`,
    });

    // The repository's jobs and rules: `strand` with the worker and the exporter as its static
    // targets; `strand-kubernetes` with its relabelling applied to static targets that carry the
    // labels Kubernetes service discovery would (Debian's build has none): one pod annotated for
    // scraping on the worker's port, one not. The DLQ alert's `for: 5m` is shortened in the test's
    // copy only (promtool tests the 5 minutes).
    const pod = (name: string, scrape: string) => ({
      __meta_kubernetes_pod_annotation_prometheus_io_scrape: scrape,
      __meta_kubernetes_pod_annotation_prometheus_io_port: String(worker!.metricsPort),
      __meta_kubernetes_pod_annotation_prometheus_io_path: '/metrics',
      __meta_kubernetes_namespace: 'payments',
      __meta_kubernetes_pod_name: name,
    });
    expect(repositoryPrometheusConfig().rule_files).toEqual(['alerts.yml', 'recording.yml']);
    const { config, files } = repositoryConfig({
      targets: [workerAddr, exporterAddr, ...targets],
      interval: '1s',
      kubernetesTargets: [
        { targets: ['127.0.0.1:1'], labels: pod('payments-worker-0', 'true') },
        { targets: ['127.0.0.1:2'], labels: pod('not-annotated', 'false') },
      ],
      editRules: (rules) => {
        const dlq = rules.find((r) => r.alert === 'StrandDeadLettersPiling');
        if (!dlq) throw new Error('no StrandDeadLettersPiling alert');
        dlq.for = '1s';
      },
    });
    prom = await PrometheusServer.start(config, files);
  }, 180_000);

  afterAll(async () => {
    release();
    await prom?.stop();
    if (exporter && exporter.exitCode === null) {
      const exited = new Promise((r) => exporter!.once('exit', r));
      exporter.kill('SIGTERM');
      const timer = setTimeout(() => exporter!.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    await worker?.stop({ timeoutMs: 5000 });
    await cleanupTopic?.();
    await outbox.relay?.stop();
    if (outbox.table)
      await outbox.pool?.query(`DROP TABLE IF EXISTS "${outbox.table}"`).catch(() => undefined);
    await outbox.pool?.end();
    await outbox.cleanupTopic?.();
  }, 60_000);

  it('promtool: rules valid, every alert fires at its threshold and not just below, scrape config (static part) valid', () => {
    server();
    const rules = promtool(['check', 'rules', `${DIR}/alerts.yml`, `${DIR}/recording.yml`]);
    expect(rules.out).toContain(`SUCCESS: ${alertRules.length} rules found`);
    expect(rules.code, rules.out).toBe(0);
    const unit = promtool(['test', 'rules', `${DIR}/alerts.test.yml`]);
    expect(unit.code, unit.out).toBe(0);
    expect(unit.out).toContain('SUCCESS');

    // Each alert has a case where it fires and one where it does not (below the threshold or
    // before its `for`).
    const tests = (
      parse(read(`${DIR}/alerts.test.yml`)) as {
        tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[];
      }
    ).tests.flatMap((t) => t.alert_rule_test ?? []);
    for (const { alert } of alertRules) {
      const cases = tests.filter((t) => t.alertname === alert);
      expect(
        cases.some((c) => c.exp_alerts.length > 0),
        `${alert} fires in alerts.test.yml`,
      ).toBe(true);
      expect(
        cases.some((c) => c.exp_alerts.length === 0),
        `${alert} stays quiet in alerts.test.yml`,
      ).toBe(true);
    }

    // Debian's promtool has no Kubernetes service discovery: the documented local runner's --check
    // validates the config without the strand-kubernetes job (its relabelling runs in the next test).
    const check = spawnSync(
      process.execPath,
      ['--import', 'tsx', 'test/support/prometheus-local.ts', '--check', '127.0.0.1:9464'],
      { encoding: 'utf8' },
    );
    expect(check.status, `${check.stdout}${check.stderr}`).toBe(0);
    expect(check.stdout).toContain('is valid prometheus config file syntax');
    expect(check.stdout).toContain('SUCCESS: 2 rule files found');
  });

  it('scrapes the worker and strand exporter: queue_depth_pending = the admin lag, other series dropped, Kubernetes relabelling', async () => {
    const p = server();
    const expected = await adminLag(groupId, [topic, tier]);
    expect(sum(expected)).toBe(JOBS); // the gate holds every job: nothing committed
    for (const instance of [workerAddr, exporterAddr]) {
      await waitUntil(
        async () => {
          const got = new Map(
            (
              await p.query(`queue_depth_pending{job="strand", instance="${instance}", group="${groupId}"}`)
            ).map((s) => [`${s.metric.topic}/${s.metric.partition}`, s.value]),
          );
          expect(got).toEqual(expected);
          return true;
        },
        { timeoutMs: 20_000, what: `queue_depth_pending from ${instance} = the admin lag` },
      );
    }

    // The worker is scraped twice (both jobs) and the exporter once: a plain sum counts the lag
    // three times, the recording rule once.
    await waitUntil(
      async () =>
        one(await p.query(`sum(queue_depth_pending{group="${groupId}"})`), 'sum') === 3 * JOBS &&
        one(await p.query(`group:queue_depth_pending:sum{group="${groupId}"}`), 'recorded') === JOBS,
      { timeoutMs: 10_000, what: 'the recorded lag counting each partition once' },
    );

    // The worker serves an application metric; neither job keeps it.
    const raw = await (await fetch(`http://${workerAddr}/metrics`)).text();
    expect(raw).toContain('payments_gateway_calls_total');
    const keep = /^(queue_|process_|nodejs_)/;
    // Series Prometheus writes itself: target health, scrape figures, and the state of alerting
    // rules (an alert on the lag this test builds up may be pending: ALERTS, ALERTS_FOR_STATE).
    const prometheusOwn = /^(up|scrape_.*|ALERTS|ALERTS_FOR_STATE)$/;
    const names = await p.query('count by (__name__, job) ({job=~"strand|strand-kubernetes"})');
    expect(new Set(names.map((n) => n.metric.job))).toEqual(new Set(['strand', 'strand-kubernetes']));
    const outside = names
      .map((n) => n.metric.__name__!)
      .filter((n) => !keep.test(n) && !prometheusOwn.test(n));
    expect(outside).toEqual([]);
    expect(names.some((n) => n.metric.__name__ === 'process_resident_memory_bytes')).toBe(true);
    const dropped = await p.query(
      `scrape_samples_scraped{instance="${workerAddr}"} - scrape_samples_post_metric_relabeling`,
    );
    expect(dropped.length).toBe(2);
    for (const d of dropped) expect(d.value).toBeGreaterThan(0);

    // strand-kubernetes: the annotated pod is scraped on its annotated port, with namespace and pod
    // labels; the other is dropped before any scrape.
    const targets = await p.targets();
    const kube = targets.activeTargets.filter((t) => t.labels.job === 'strand-kubernetes');
    expect(kube.map((t) => t.labels)).toEqual([
      { instance: workerAddr, job: 'strand-kubernetes', namespace: 'payments', pod: 'payments-worker-0' },
    ]);
    expect(kube[0]!.health, kube[0]!.lastError).toBe('up');
    expect(
      targets.droppedTargets.map((t) => t.discoveredLabels.__meta_kubernetes_pod_name).filter(Boolean),
    ).toEqual(['not-annotated']);
  });

  it('the recording rules feed prometheus-adapter and KEDA: ceil(lag / 500) within 3–50 = queue_desired_replicas', async () => {
    const p = server();
    const hpa = parse(read('deploy/kubernetes/hpa.yaml'));
    const adapter = parse(read(`${DIR}/adapter-rules.yaml`)).externalRules[0];
    const keda = parse(read('deploy/keda/scaledobject.yaml'));
    const target = Number(hpa.spec.metrics[0].external.target.averageValue);
    const [min, max] = [hpa.spec.minReplicas, hpa.spec.maxReplicas];
    expect([target, min, max]).toEqual([500, 3, 50]);
    const replicas = Math.min(max, Math.max(min, Math.ceil(JOBS / target)));
    expect(replicas).toBe(5); // inside the bounds: the division decides, not the clamp

    // The HPA asks the adapter for the metric its rule exposes, with its selector as matchers.
    expect(adapter.name.as).toBe(hpa.spec.metrics[0].external.metric.name);
    const series = (adapter.seriesQuery as string).replace(/\{.*$/, '');
    expect(new RegExp(adapter.name.matches).test(series)).toBe(true);
    const matchers = Object.entries(hpa.spec.metrics[0].external.metric.selector.matchLabels as object)
      .map(([k, v]) => `${k}="${k === 'group' ? groupId : v}"`)
      .join(',');
    const adapterQuery = (adapter.metricsQuery as string)
      .replace('<<.Series>>', series)
      .replace('<<.LabelMatchers>>', matchers);
    const kedaTrigger = keda.spec.triggers[0].metadata;
    const kedaQuery = (kedaTrigger.query as string).replace('payments-workers', groupId);
    expect(Number(kedaTrigger.threshold)).toBe(target);
    expect([keda.spec.minReplicaCount, keda.spec.maxReplicaCount]).toEqual([min, max]);

    await waitUntil(
      async () => {
        expect(one(await p.query(adapterQuery), adapterQuery)).toBe(JOBS);
        expect(one(await p.query(kedaQuery), kedaQuery)).toBe(JOBS);
        const hpaView = `clamp(ceil(${series}{group="${groupId}"} / ${target}), ${min}, ${max})`;
        expect(one(await p.query(hpaView), hpaView)).toBe(replicas);
        const reported = await p.query(`queue_desired_replicas{job="strand", group="${groupId}"}`);
        expect(reported.map((s) => [s.metric.instance, s.value]).sort()).toEqual(
          [
            [exporterAddr, replicas],
            [workerAddr, replicas],
          ].sort(),
        );
        expect(one(await p.query(`group:queue_desired_replicas:max{group="${groupId}"}`), 'max')).toBe(
          replicas,
        );
        return true;
      },
      { timeoutMs: 15_000, what: `${replicas} replicas from every signal` },
    );
  });

  it('the DLQ alert stays quiet at 100 dead-lettered jobs and fires at 101 (its `for` shortened in the test copy)', async () => {
    const p = server();
    release();
    await waitUntil(() => done.dead === 100 && done.completed === JOBS - 100, {
      timeoutMs: 60_000,
      what: `every job finished (${JSON.stringify(done)})`,
    });
    // Both the worker and the exporter report 100 (the worker through both jobs).
    await waitUntil(
      async () => {
        const depth = await p.query(`queue_dlq_depth{topic="${topic}"}`);
        return depth.length === 3 && depth.every((d) => d.value === 100);
      },
      { timeoutMs: 20_000, what: 'queue_dlq_depth 100 in Prometheus' },
    );
    // Drained: lag 0, and the worker's desired replicas fall to the HPA's minimum like its formula.
    await waitUntil(
      async () =>
        one(await p.query(`group:queue_depth_pending:sum{group="${groupId}"}`), 'lag') === 0 &&
        one(await p.query(`queue_desired_replicas{job="strand", instance="${workerAddr}"}`), 'worker') ===
          3 &&
        one(
          await p.query(`clamp(ceil(group:queue_depth_pending:sum{group="${groupId}"} / 500), 3, 50)`),
          'hpa',
        ) === 3,
      { timeoutMs: 20_000, what: 'lag 0 and 3 desired replicas' },
    );
    await new Promise((r) => setTimeout(r, 3000)); // three evaluations at 100
    const quiet = (await p.alerts()).filter((a) => a.labels.alertname === 'StrandDeadLettersPiling');
    expect(quiet).toEqual([]);

    await enqueuePayments(topic, 1, 1, { memo: () => 'poison' });
    const firing = await waitUntil(
      async () =>
        (await p.alerts()).find(
          (a) =>
            a.labels.alertname === 'StrandDeadLettersPiling' &&
            a.labels.topic === topic &&
            a.state === 'firing',
        ),
      { timeoutMs: 20_000, what: 'StrandDeadLettersPiling firing' },
    );
    expect(firing.labels).toEqual({ alertname: 'StrandDeadLettersPiling', topic, severity: 'page' });
    expect(firing.value).toBe(101);
  });

  it('every Grafana dashboard query returns data (the outbox panels from a running relay)', async (ctx) => {
    const p = server();
    // The outbox panels need the relay, which needs PostgreSQL (skipped with the reason without it).
    needPostgres(ctx);
    expect(outbox.relay, 'the outbox relay started in beforeAll').toBeDefined();
    // Rows keep coming while the panels are read: the publish rate and latency have something to show.
    const feeding = setInterval(() => void writeOutbox(3).catch(() => undefined), 500);
    const dashboard = JSON.parse(read('deploy/grafana/strand-dashboard.json')) as {
      panels: { title: string; targets?: { expr: string }[] }[];
    };
    const queries = dashboard.panels.flatMap((panel) => {
      expect(panel.targets?.length, `${panel.title} has a query`).toBeGreaterThan(0);
      return panel.targets!.map((t) => ({ title: panel.title, expr: t.expr }));
    });
    for (const q of queries)
      expect(q.expr, `${q.title}: no dashboard variables to fill in`).not.toContain('$');
    let empty: string[] = [];
    let published = 0;
    const rate = `sum by (table, topic) (rate(queue_outbox_published_total{table="${outbox.table}"}[1m]))`;
    await waitUntil(
      async () => {
        empty = [];
        for (const q of queries)
          if ((await p.query(q.expr)).length === 0) empty.push(`${q.title}: ${q.expr}`);
        // The outbox panels show the relay's numbers, not just any series: rows being published.
        published = (await p.query(rate))[0]?.value ?? 0;
        return empty.length === 0 && published > 0;
      },
      { timeoutMs: 30_000, what: 'data for every panel, a publish rate above 0' },
    )
      .catch(() => undefined)
      .finally(() => clearInterval(feeding));
    expect(empty).toEqual([]);
    expect(published, rate).toBeGreaterThan(0);
    // What waits is what the table holds (the relay reads it every 500 ms; Prometheus every 1 s).
    await waitUntil(
      async () => {
        const pending = `max by (table, topic) (queue_outbox_pending{table="${outbox.table}"})`;
        return (
          one(await p.query(pending), pending) === 0 && outbox.relay!.counts.published === outbox.written
        );
      },
      { timeoutMs: 20_000, what: 'queue_outbox_pending back to 0 once every row is published' },
    );
  });
});
