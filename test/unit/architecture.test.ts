import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

// The shape docs/architecture.md promises, checked on the source tree.

const SRC = resolve('src');

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : path.endsWith('.ts') ? [path] : [];
  });
}

/** `src/<folder>` of a file, or the file itself for top-level files (ports.ts, headers.ts, …). */
function room(path: string): string {
  const rel = relative(SRC, path);
  return rel.includes('/') ? rel.slice(0, rel.indexOf('/')) : rel;
}

function imports(path: string): string[] {
  const text = readFileSync(path, 'utf8');
  return [...text.matchAll(/(?:from|import)\s*\(?\s*'([^']+)'/g)].map((m) => m[1]!);
}

describe('architecture', () => {
  it('no file in src/worker/ is over 400 lines (the Worker is a facade over small parts)', () => {
    const sizes = files(join(SRC, 'worker')).map(
      (f) => [relative(SRC, f), readFileSync(f, 'utf8').split('\n').length] as const,
    );
    expect(sizes.filter(([, lines]) => lines > 400)).toEqual([]);
    expect(sizes.map(([f]) => f)).toContain('worker/worker.ts');
  });

  it('only src/kafka/ imports kafkajs', () => {
    const importers = files(SRC)
      .filter((f) => imports(f).some((i) => i === 'kafkajs' || i.startsWith('kafkajs/')))
      .map((f) => room(f));
    expect([...new Set(importers)]).toEqual(['kafka']);
  });

  it('no import cycle between the folders of src/', () => {
    const edges = new Map<string, Set<string>>();
    for (const f of files(SRC)) {
      for (const spec of imports(f)) {
        if (!spec.startsWith('.')) continue;
        const target = resolve(dirname(f), spec);
        const [from, to] = [room(f), room(target)];
        if (from === to) continue;
        if (!edges.has(from)) edges.set(from, new Set());
        edges.get(from)!.add(to);
      }
    }
    // Depth-first search for a back edge; report the cycle found.
    const state = new Map<string, 'open' | 'done'>();
    const path: string[] = [];
    const cycles: string[] = [];
    const visit = (node: string) => {
      state.set(node, 'open');
      path.push(node);
      for (const next of edges.get(node) ?? []) {
        if (state.get(next) === 'open') cycles.push([...path.slice(path.indexOf(next)), next].join(' → '));
        else if (!state.has(next)) visit(next);
      }
      path.pop();
      state.set(node, 'done');
    };
    for (const node of edges.keys()) if (!state.has(node)) visit(node);
    expect(cycles).toEqual([]);
  });

  it('no comment cites a design document that is not in the repository', () => {
    const cites = files(SRC).filter((f) => /DESIGN §/.test(readFileSync(f, 'utf8')));
    expect(cites.map((f) => relative(SRC, f))).toEqual([]);
  });
});
