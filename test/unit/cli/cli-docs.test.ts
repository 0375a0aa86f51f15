import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../../src/cli/program.js';

const doc = readFileSync('docs/cli.md', 'utf8');
const synopsis = /```\n([\s\S]*?)```/.exec(doc)?.[1] ?? '';

/** Leaf commands with their path from the root: `dlq replay`, `worker`, … */
function leaves(cmd: Command, path: string[] = []): { path: string; cmd: Command }[] {
  if (cmd.commands.length === 0) return [{ path: path.join(' '), cmd }];
  return cmd.commands.flatMap((c) => leaves(c, [...path, c.name()]));
}

/** A command's synopsis entry: its line and the indented lines continuing it. */
function entry(path: string): string {
  const lines = synopsis.split('\n');
  const at = lines.findIndex((l) => l.startsWith(`strand ${path} `) || l === `strand ${path}`);
  if (at < 0) return '';
  const out = [lines[at]!];
  for (let i = at + 1; i < lines.length && /^\s+\[/.test(lines[i]!); i++) out.push(lines[i]!);
  return out.join(' ');
}

function helpOf(cmd: Command): string {
  let text = '';
  cmd.configureOutput({ writeOut: (s) => (text += s), writeErr: (s) => (text += s) });
  cmd.outputHelp();
  return text;
}

describe('docs/cli.md', () => {
  const program = buildProgram();

  it('has a synopsis entry for every command that lists every one of its flags', () => {
    const all = leaves(program);
    expect(all.length).toBeGreaterThan(10);
    for (const { path, cmd } of all) {
      const line = entry(path);
      expect(line, `synopsis of "strand ${path}"`).not.toBe('');
      for (const option of cmd.options) {
        if (!option.long || option.long === '--help') continue;
        expect(line, `"strand ${path}" lists ${option.long}`).toMatch(
          new RegExp(`${option.long.replace(/-/g, '\\-')}(?![\\w-])`),
        );
      }
    }
  });

  it('lists no flag a command does not have', () => {
    for (const { path, cmd } of leaves(program)) {
      const known = new Set(cmd.options.map((o) => o.long));
      for (const [flag] of entry(path).matchAll(/--[a-z][a-z-]*/g))
        expect(known.has(flag), `"strand ${path}" has ${flag}`).toBe(true);
    }
  });

  it('gives examples in the help of the program, every group and every command', () => {
    const groups = [program, ...program.commands.filter((c) => c.commands.length > 0)];
    for (const cmd of [...groups, ...leaves(program).map((l) => l.cmd)])
      expect(helpOf(cmd), `help of ${cmd.name()}`).toContain('Examples:');
  });
});
