import { spawnSync } from 'node:child_process';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runNode } from '../support/cli.js';
import { jobTopic, stack, uniqueName } from '../support/helpers.js';

/**
 * Every TypeScript snippet of the README and docs/, compiled as a user's project would: in a folder
 * outside this repository whose node_modules/strand is this package (dist/ and its .d.ts, as
 * `npm install` leaves it). A snippet that declares what it assumes (`declare const …`) is a
 * fragment and is only type-checked; every other one is a complete program and is run against the
 * test stack, on a topic of its own, and must end by itself.
 */
const repo = resolve('.');
const files = [
  'README.md',
  ...readdirSync('docs')
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
];
const snippets = files.flatMap((file) => {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/```(?:ts|typescript)\n([\s\S]*?)```/g)].map((m, i) => ({
    name: `${file.replace(/[/.]/g, '_')}_${i + 1}`,
    where: `${file}:${text.slice(0, m.index).split('\n').length}`,
    code: m[1]!,
  }));
});
const complete = snippets.filter((s) => !/^\s*declare\s/m.test(s.code));

const project = mkdtempSync(join(tmpdir(), 'strand-snippets-'));
afterAll(() => rmSync(project, { recursive: true, force: true }));

function setUpProject(): void {
  mkdirSync(join(project, 'node_modules'));
  symlinkSync(repo, join(project, 'node_modules', 'strand'), 'dir');
  // The OpenTelemetry packages docs/tracing.md registers an SDK with (dev dependencies here).
  symlinkSync(
    join(repo, 'node_modules', '@opentelemetry'),
    join(project, 'node_modules', '@opentelemetry'),
    'dir',
  );
  writeFileSync(join(project, 'package.json'), JSON.stringify({ type: 'module', private: true }));
  const base = JSON.parse(readFileSync('tsconfig.json', 'utf8')) as {
    compilerOptions: Record<string, unknown>;
  };
  writeFileSync(
    join(project, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        ...base.compilerOptions,
        rootDir: '.',
        outDir: 'out',
        sourceMap: false,
        declaration: false,
        typeRoots: [join(repo, 'node_modules', '@types')],
      },
      include: ['*.ts'],
    }),
  );
  for (const s of snippets) writeFileSync(join(project, `${s.name}.ts`), s.code);
}

describe('TypeScript in the README and docs', () => {
  it('has snippets, and at least one complete program', () => {
    expect(snippets.length).toBeGreaterThan(0);
    expect(complete.length).toBeGreaterThan(0);
  });

  it('type-checks against the package types (dist), as a project outside the repository', () => {
    setUpProject();
    const tsc = spawnSync(process.execPath, [join(repo, 'node_modules/typescript/bin/tsc'), '-p', project], {
      encoding: 'utf8',
    });
    const where = (out: string) =>
      out.replace(
        /([\w-]+_md_\d+)\.ts/g,
        (name, base: string) => snippets.find((s) => s.name === base)?.where ?? name,
      );
    expect(tsc.status, where(tsc.stdout + tsc.stderr)).toBe(0);
  }, 110_000);

  it.each(complete.map((s) => [s.where, s] as const))(
    '%s runs to the end against the stack',
    async (_, s) => {
      const { brokers, registryUrl } = stack();
      const { topic, cleanup } = await jobTopic('snippet', {
        partitions: 2,
        tierDelays: [1000, 10_000, 60_000],
      });
      // The program as written, on this test's own topic and group and the test stack.
      const js = readFileSync(join(project, 'out', `${s.name}.js`), 'utf8')
        .replaceAll("'payments-workers'", `'${uniqueName('snippet-group')}'`)
        .replaceAll("'payments'", `'${topic}'`)
        .replaceAll("['127.0.0.1:9092']", JSON.stringify(brokers))
        .replaceAll("'http://127.0.0.1:8081/apis/ccompat/v7'", `'${registryUrl}'`);
      const file = join(project, 'out', `${s.name}.run.js`);
      writeFileSync(file, js);
      try {
        const r = await runNode([file], {
          cwd: project,
          env: { ...process.env, STRAND_LOG_LEVEL: 'warn' },
          timeoutMs: 90_000,
        });
        const out = r.stdout + r.stderr;
        expect(r.ended, `${s.where} still running after 90 s:\n${out}`).toBe(true);
        expect(r.code, out).toBe(0);
      } finally {
        await cleanup();
      }
    },
    110_000,
  );
});
