import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ConfigError } from '../config/index.js';
import { isWorkerDefinition } from '../worker/options.js';
import { CliError, EXIT } from './common.js';

interface EsbuildMessage {
  text: string;
  location?: { file: string; line: number; column: number } | null;
}

/** A path as the user would type it: relative to the working directory when inside it. */
function shown(file: string): string {
  const path = file.startsWith('file:') ? fileURLToPath(file.replace(/\?.*$/, '')) : file;
  const rel = relative(process.cwd(), path);
  return rel.startsWith('..') ? path : rel;
}

/** A frame's place, `(file:line:col)` or `at file:line:col`, when it is the user's code. */
const FRAME = /(?:^at |\()((?:file:\/\/)?\/[^():?]+)(?:\?[^():]*)?:(\d+):(\d+)\)?$/;
const NOT_THE_USERS = /\/node_modules\/|\/dist\/cli\/|\/src\/cli\//;

/**
 * Why a module did not load, in one line with its place: every esbuild message with
 * file:line:column instead of its "Transform failed with 1 error:" header, a JavaScript syntax error
 * with the line Node names, or a throw at import time with its first frame in the user's code.
 */
export function loadFailure(error: unknown, file?: string): string {
  if (!(error instanceof Error)) return String(error);
  const messages = (error as { errors?: EsbuildMessage[] }).errors;
  if (Array.isArray(messages) && messages.length > 0) {
    return messages
      .map((m) =>
        m.location ? `${shown(m.location.file)}:${m.location.line}:${m.location.column}: ${m.text}` : m.text,
      )
      .join('; ');
  }
  const lines = error.message.split('\n').filter((l) => l.trim() !== '');
  const transform =
    /^Transform failed with \d+ errors?:$/.test(lines[0] ?? '') || error.name === 'TransformError';
  const text = (/^Transform failed/.test(lines[0] ?? '') ? lines.slice(1) : lines)
    .map((l) =>
      l.replace(/^(\/\S+?):(\d+):(\d+): ERROR: /, (_, f: string, l2, c) => `${shown(f)}:${l2}:${c}: `),
    )
    .join('; ');
  if (transform) return text; // esbuild's lines carry their places
  const what = error.name === 'Error' ? text : `${error.name}: ${text}`;
  const stack = (error.stack ?? '').split('\n').map((l) => l.trim());
  // Node 20 keeps an ESM syntax error's place out of the error; `node --check` prints it first.
  if (error.name === 'SyntaxError' && file && /\.[cm]?jsx?$/.test(file)) {
    const check = spawnSync(process.execPath, ['--check', file], { encoding: 'utf8', timeout: 10_000 });
    const at = /^(\/.+):(\d+)$/m.exec(check.stderr ?? '');
    if (at) return `${what} (at ${shown(at[1]!)}:${at[2]})`;
  }
  const frame = stack.map((l) => FRAME.exec(l)).find((m) => m && !NOT_THE_USERS.test(m[1] ?? ''));
  return frame ? `${what} (at ${shown(frame[1]!)}:${frame[2]}:${frame[3]})` : what;
}

/** ESM or CommonJS, as Node decides for this file: its extension, else the nearest package.json "type". */
function isEsm(file: string): boolean {
  if (/\.m[jt]sx?$/.test(file)) return true;
  if (/\.c[jt]sx?$/.test(file)) return false;
  for (let dir = dirname(file); ; dir = dirname(dir)) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        return (JSON.parse(readFileSync(pkg, 'utf8')) as { type?: string }).type === 'module';
      } catch {
        return false;
      }
    }
    if (dirname(dir) === dir) return false;
  }
}

async function importModule(file: string, modulePath: string): Promise<{ default?: unknown }> {
  if (!/\.(c|m)?tsx?$/.test(file)) return (await import(pathToFileURL(file).href)) as { default?: unknown };
  const missing = () => {
    throw new ConfigError(
      '<module>',
      `${modulePath}: TypeScript modules need tsx (npm install tsx), or compile it to .js`,
    );
  };
  if (isEsm(file)) {
    // tsx's loader for the whole process, not `tsImport`: that one loads the module in a namespace
    // of its own (URLs ending in `?tsx-namespace=…`), so its `import 'strand'` loaded a second copy
    // of Strand and every dependency (3 s instead of 0.7), and its frames carried the query.
    const { register } = await import('tsx/esm/api').catch(missing);
    register();
    return (await import(pathToFileURL(file).href)) as { default?: unknown };
  }
  // tsx's ESM loader would run a CommonJS-scoped module from a data: URL, and a throw in it would
  // have no file:line; its CommonJS loader keeps the path (and source maps) of the file.
  const { require: tsRequire } = await import('tsx/cjs/api').catch(missing);
  return tsRequire(file, import.meta.url) as { default?: unknown };
}

/** Loads `strand worker <module>`'s default export: a `defineWorker({...})` definition. */
export async function loadDefinition(modulePath: string): Promise<unknown> {
  const file = resolve(modulePath);
  if (!existsSync(file)) throw new ConfigError('<module>', `${modulePath} not found`);
  if (!/\.(c|m)?(j|t)sx?$/.test(file))
    throw new ConfigError(
      '<module>',
      `${modulePath} is not a JavaScript or TypeScript module (.js, .mjs, .ts)`,
    );
  let mod: { default?: unknown };
  // Source-mapped stacks from here on, for the life of the worker: a throw at import time, and
  // every handler error (logs, the DLQ's strand-error-stack), name the lines of the .ts file
  // (tsx compiles with inline maps), not `x.ts:1:533` of the compiled code. Strand's own frames map
  // to its src/, which the package ships for that. The cost: about 50 µs more per error whose
  // stack is read (a failed job's), measured with a tsx-loaded handler.
  process.setSourceMapsEnabled(true);
  try {
    mod = await importModule(file, modulePath);
  } catch (error) {
    if ((error as { name?: string }).name === 'ConfigError') throw error;
    // The module itself failed (a syntax error, a throw at import time): a runtime failure, exit 1.
    throw new CliError(`cannot load ${modulePath}: ${loadFailure(error, file)}`, EXIT.failure);
  }
  const def = (mod.default as { default?: unknown } | undefined)?.default ?? mod.default;
  if (!isWorkerDefinition(def)) {
    throw new ConfigError('<module>', `${modulePath} must default-export defineWorker({...})`);
  }
  return def;
}
