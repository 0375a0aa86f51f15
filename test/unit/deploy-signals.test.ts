import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';

// The kubelet sends SIGTERM to the container's main process only. npx, npm and `sh -c` exit on it
// without passing it on, so the worker would never stop gracefully (test/integration/deploy-sigterm
// runs the command for real).
describe('the worker Deployment command', () => {
  it('runs node directly, not through npx, npm or a shell', () => {
    const dep = parseAllDocuments(
      readFileSync('deploy/kubernetes/worker-deployment.yaml', 'utf8'),
    )[0]!.toJS();
    const c = dep.spec.template.spec.containers[0] as { command?: string[]; args?: string[] };
    const argv = [...(c.command ?? []), ...(c.args ?? [])];
    expect(c.command?.[0]).toBe('node');
    expect(argv).toContain('worker');
    for (const wrapper of ['npx', 'npm', 'sh', 'bash', '-c']) expect(argv).not.toContain(wrapper);
  });
});
