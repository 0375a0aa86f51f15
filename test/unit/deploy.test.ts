import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { QueueMetrics } from '../../src/observability/metrics.js';
import { OutboxMetrics } from '../../src/outbox/metrics.js';

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name)) : [join(dir, e.name)],
  );
}

const exported = new Set<string>();
for (const m of [
  ...new QueueMetrics({ defaultMetrics: false }).registry.getMetricsAsArray(),
  ...new OutboxMetrics({ defaultMetrics: false }).registry.getMetricsAsArray(),
]) {
  exported.add(m.name);
  if (String(m.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) exported.add(m.name + s);
}

describe('deploy/ assets', () => {
  const all = files('deploy');

  it('every YAML and JSON file parses', () => {
    expect(all.length).toBeGreaterThanOrEqual(7);
    for (const f of all) {
      const text = readFileSync(f, 'utf8');
      if (f.endsWith('.json')) expect(() => JSON.parse(text), f).not.toThrow();
      else for (const doc of parseAllDocuments(text)) expect(doc.errors, f).toEqual([]);
    }
  });

  it('every queue_ metric they use is one Strand exports', () => {
    const used = new Set<string>();
    for (const f of all)
      for (const m of readFileSync(f, 'utf8').matchAll(/queue_[a-z_]+/g))
        if (m[0] !== 'queue_.') used.add(m[0].replace(/_$/, ''));
    used.delete('queue_'); // the keep regex "queue_.*"
    expect(used.size).toBeGreaterThanOrEqual(10);
    for (const name of used) expect(exported, `${name} is exported`).toContain(name);
  });

  it('the HPA scales on queue_depth_pending with the agreed bounds and behaviour', () => {
    const hpa = parseAllDocuments(readFileSync('deploy/kubernetes/hpa.yaml', 'utf8'))[0]!.toJS();
    expect(hpa.spec.minReplicas).toBe(3);
    expect(hpa.spec.maxReplicas).toBe(50);
    expect(hpa.spec.metrics[0].external.metric.name).toBe('queue_depth_pending');
    expect(hpa.spec.metrics[0].external.target.averageValue).toBe('500');
    expect(hpa.spec.behavior.scaleUp).toEqual({
      stabilizationWindowSeconds: 60,
      policies: [{ type: 'Percent', value: 100, periodSeconds: 30 }],
    });
    expect(hpa.spec.behavior.scaleDown).toEqual({
      stabilizationWindowSeconds: 300,
      policies: [{ type: 'Percent', value: 10, periodSeconds: 60 }],
    });
  });

  it('the Deployment probes the worker endpoints and its grace period covers the shutdown budget', () => {
    const dep = parseAllDocuments(
      readFileSync('deploy/kubernetes/worker-deployment.yaml', 'utf8'),
    )[0]!.toJS();
    const spec = dep.spec.template.spec;
    expect(spec.terminationGracePeriodSeconds).toBeGreaterThan(30);
    expect(spec.containers[0].livenessProbe.httpGet.path).toBe('/healthz');
    expect(spec.containers[0].readinessProbe.httpGet.path).toBe('/readyz');
  });

  it('alerts on queue_dlq_depth > 100', () => {
    expect(readFileSync('deploy/prometheus/alerts.yml', 'utf8')).toContain('queue_dlq_depth > 100');
  });
});
