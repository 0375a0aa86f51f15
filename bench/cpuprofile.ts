/**
 * Self-time tables from a V8 .cpuprofile (`node --cpu-prof`): by function (name + file + line),
 * by file and by package, with the TypeScript source line of dist/ functions (from dist's source
 * maps). Used by bench/profile.ts; alone: `node --import tsx bench/cpuprofile.ts <file.cpuprofile>`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  }[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface Row {
  name: string;
  /** Self time in microseconds. */
  self: number;
  file?: string;
  /** 1-based, as editors count. */
  line?: number;
  /** `src/...ts:line` for a function of dist/, from the source map. */
  source?: string;
}

export interface Aggregate {
  /** Profile length and the part of it not idle, microseconds. */
  total: number;
  busy: number;
  samples: number;
  functions: Row[];
  files: Row[];
  packages: Row[];
}

const ROOT = join(import.meta.dirname, '..');
const SPECIAL = new Set(['(garbage collector)', '(program)', '(idle)', '(root)']);

/** Repository-relative path of a script url; node internals and V8 builtins keep their names. */
function shortFile(url: string): string {
  if (!url) return '(native)';
  if (url.startsWith('file://')) {
    const path = fileURLToPath(url);
    return path.startsWith(ROOT) ? relative(ROOT, path) : path;
  }
  return url;
}

function packageOf(name: string, url: string): string {
  if (SPECIAL.has(name)) return name;
  if (!url) return '(native / V8 builtins)';
  if (url.startsWith('node:')) return 'node (internals)';
  const file = shortFile(url);
  const nm = file.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const parts = file.slice(nm + 'node_modules/'.length).split('/');
    return parts[0]!.startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]!;
  }
  if (file.startsWith('dist/')) return 'strand (dist/)';
  if (file.startsWith('bench/')) return 'bench harness';
  return 'other';
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** Source map v3 `mappings`: per generated line, segments [column, source, line, column]. */
function decodeMappings(mappings: string): number[][][] {
  const lines: number[][][] = [];
  let source = 0;
  let srcLine = 0;
  let srcCol = 0;
  for (const text of mappings.split(';')) {
    const segments: number[][] = [];
    let genCol = 0;
    for (const seg of text.split(',')) {
      if (!seg) continue;
      const values: number[] = [];
      let value = 0;
      let shift = 0;
      for (const ch of seg) {
        const digit = B64.indexOf(ch);
        value += (digit & 31) << shift;
        if (digit & 32) shift += 5;
        else {
          values.push(value & 1 ? -(value >>> 1) : value >>> 1);
          value = 0;
          shift = 0;
        }
      }
      genCol += values[0] ?? 0;
      if (values.length >= 4) {
        source += values[1]!;
        srcLine += values[2]!;
        srcCol += values[3]!;
        segments.push([genCol, source, srcLine, srcCol]);
      }
    }
    lines.push(segments);
  }
  return lines;
}

const maps = new Map<string, { sources: string[]; lines: number[][][] } | null>();

/** `src/x.ts:line` for a 0-based position in a dist/ file, when its source map says. */
export function original(file: string, line: number, column: number): string | undefined {
  if (!file.startsWith('dist/') || line < 0) return undefined;
  let map = maps.get(file);
  if (map === undefined) {
    const path = join(ROOT, `${file}.map`);
    map = null;
    if (existsSync(path)) {
      const raw = JSON.parse(readFileSync(path, 'utf8')) as { sources: string[]; mappings: string };
      map = {
        sources: raw.sources.map((s) => relative(ROOT, join(ROOT, file, '..', s))),
        lines: decodeMappings(raw.mappings),
      };
    }
    maps.set(file, map);
  }
  const segments = map?.lines[line];
  if (!map || !segments?.length) return undefined;
  let best = segments[0]!;
  for (const s of segments) if (s[0]! <= column) best = s;
  return `${map.sources[best[1]!]}:${best[2]! + 1}`;
}

export function aggregate(profile: CpuProfile): Aggregate {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfById = new Map<number, number>();
  const { samples, timeDeltas } = profile;
  let t = profile.startTime;
  const stamps = timeDeltas.map((d) => {
    t += d;
    return t;
  });
  for (let i = 0; i < samples.length; i++) {
    const next = i + 1 < stamps.length ? stamps[i + 1]! : profile.endTime;
    const dt = Math.max(0, next - stamps[i]!);
    selfById.set(samples[i]!, (selfById.get(samples[i]!) ?? 0) + dt);
  }
  const fns = new Map<string, Row>();
  const files = new Map<string, Row>();
  const packages = new Map<string, Row>();
  const add = (map: Map<string, Row>, key: string, row: Omit<Row, 'self'>, self: number) => {
    const r = map.get(key);
    if (r) r.self += self;
    else map.set(key, { ...row, self });
  };
  let total = 0;
  let idle = 0;
  for (const [id, self] of selfById) {
    const { functionName, url, lineNumber, columnNumber } = byId.get(id)!.callFrame;
    const name = functionName || '(anonymous)';
    total += self;
    if (name === '(idle)') idle += self;
    const file = SPECIAL.has(name) ? name : shortFile(url);
    const source = original(file, lineNumber, columnNumber);
    add(
      fns,
      `${name}\u0000${url}\u0000${lineNumber}`,
      {
        name,
        ...(SPECIAL.has(name) ? {} : url ? { file, line: lineNumber + 1 } : { file }),
        ...(source ? { source } : {}),
      },
      self,
    );
    add(files, file, { name: file }, self);
    const pkg = packageOf(name, url);
    add(packages, pkg, { name: pkg }, self);
  }
  const sorted = (m: Map<string, Row>) => [...m.values()].sort((a, b) => b.self - a.self);
  return {
    total,
    busy: total - idle,
    samples: samples.length,
    functions: sorted(fns),
    files: sorted(files),
    packages: sorted(packages),
  };
}

/** Markdown tables: top `top` functions, then files and packages. */
export function renderTables(a: Aggregate, top = 20): string {
  const ms = (us: number) => (us / 1000).toFixed(0);
  const pct = (us: number, of: number) => (of > 0 ? ((100 * us) / of).toFixed(1) : '-');
  const lines = [
    `Profile: ${(a.total / 1e6).toFixed(1)} s sampled (${a.samples} samples), ${(a.busy / 1e6).toFixed(1)} s not idle. ` +
      '"self %" is of the whole profile, "% busy" of its non-idle part.',
    '',
    `## Top ${top} functions by self time`,
    '',
    '| # | function | file:line | source | self ms | self % | % busy |',
    '|---|---|---|---|---|---|---|',
  ];
  a.functions.slice(0, top).forEach((r, i) => {
    const where = r.file ? (r.line ? `${r.file}:${r.line}` : r.file) : '-';
    lines.push(
      `| ${i + 1} | \`${r.name}\` | ${where} | ${r.source ?? ''} | ${ms(r.self)} | ${pct(r.self, a.total)} | ${r.name === '(idle)' ? '-' : pct(r.self, a.busy)} |`,
    );
  });
  lines.push('', `## By file (top ${top})`, '', '| file | self ms | self % | % busy |', '|---|---|---|---|');
  for (const r of a.files.slice(0, top)) {
    lines.push(
      `| ${r.name} | ${ms(r.self)} | ${pct(r.self, a.total)} | ${r.name === '(idle)' ? '-' : pct(r.self, a.busy)} |`,
    );
  }
  lines.push('', '## By package', '', '| package | self ms | self % | % busy |', '|---|---|---|---|');
  for (const r of a.packages) {
    lines.push(
      `| ${r.name} | ${ms(r.self)} | ${pct(r.self, a.total)} | ${r.name === '(idle)' ? '-' : pct(r.self, a.busy)} |`,
    );
  }
  return `${lines.join('\n')}\n`;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const file = process.argv[2];
  if (!file) {
    console.error('usage: node --import tsx bench/cpuprofile.ts <file.cpuprofile> [top]');
    process.exit(2);
  }
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  process.stdout.write(renderTables(aggregate(profile), Number(process.argv[3] ?? 20)));
}
