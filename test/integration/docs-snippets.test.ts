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

/** The tsconfig of a user's project: this repository's strict options, its .ts and .mts files. */
function userTsconfig(): string {
  const base = JSON.parse(readFileSync('tsconfig.json', 'utf8')) as {
    compilerOptions: Record<string, unknown>;
  };
  return JSON.stringify({
    compilerOptions: {
      ...base.compilerOptions,
      rootDir: '.',
      outDir: 'out',
      sourceMap: false,
      declaration: false,
      typeRoots: [join(repo, 'node_modules', '@types')],
    },
    include: ['*.ts', '*.mts'],
  });
}

function setUpProject(): void {
  mkdirSync(join(project, 'node_modules'));
  symlinkSync(repo, join(project, 'node_modules', 'strand'), 'dir');
  // The OpenTelemetry packages docs/tracing.md registers an SDK with (dev dependencies here).
  symlinkSync(
    join(repo, 'node_modules', '@opentelemetry'),
    join(project, 'node_modules', '@opentelemetry'),
    'dir',
  );
  // pg and its types: the README's outbox example runs on the application's own pg (an optional peer).
  symlinkSync(join(repo, 'node_modules', 'pg'), join(project, 'node_modules', 'pg'), 'dir');
  mkdirSync(join(project, 'node_modules', '@types'));
  symlinkSync(
    join(repo, 'node_modules', '@types', 'pg'),
    join(project, 'node_modules', '@types', 'pg'),
    'dir',
  );
  writeFileSync(join(project, 'package.json'), JSON.stringify({ type: 'module', private: true }));
  writeFileSync(join(project, 'tsconfig.json'), userTsconfig());
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

  it('the README\'s "In code" program, in a project without "type": "module": .mts compiles, .ts fails as the README says', () => {
    const readme = readFileSync('README.md', 'utf8');
    expect(readme).toMatch(/set `"type": "module"` in its package.json or name the file `app.mts`/);
    const program = snippets.find((s) => s.where.startsWith('README.md:') && /new Worker\(/.test(s.code));
    expect(program).toBeDefined();
    const cjs = mkdtempSync(join(tmpdir(), 'strand-cjs-'));
    try {
      mkdirSync(join(cjs, 'node_modules'));
      symlinkSync(repo, join(cjs, 'node_modules', 'strand'), 'dir');
      writeFileSync(join(cjs, 'package.json'), JSON.stringify({ private: true }));
      writeFileSync(join(cjs, 'tsconfig.json'), userTsconfig());
      writeFileSync(join(cjs, 'app.ts'), program!.code);
      writeFileSync(join(cjs, 'app.mts'), program!.code);
      const tsc = spawnSync(
        process.execPath,
        [join(repo, 'node_modules/typescript/bin/tsc'), '-p', cjs, '--noEmit'],
        {
          encoding: 'utf8',
        },
      );
      const errors = [...tsc.stdout.matchAll(/\/(app\.m?ts)\(\d+,\d+\): error (TS\d+)/g)].map(
        (m) => `${m[1]} ${m[2]}`,
      );
      expect(errors.length, tsc.stdout).toBeGreaterThan(0);
      expect(new Set(errors), tsc.stdout).toEqual(new Set(['app.ts TS1295', 'app.ts TS1309']));
    } finally {
      rmSync(cjs, { recursive: true, force: true });
    }
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
        .replace(/groupId: '[\w.-]+'/g, () => `groupId: '${uniqueName('snippet-group')}'`)
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
