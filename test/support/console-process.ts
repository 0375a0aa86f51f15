import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { type Browser, chromium, type Page } from 'playwright-core';
import { stack } from './helpers.js';

/** The browser the console tests drive (Debian's chromium, through playwright-core). */
export const CHROMIUM = process.env.STRAND_CHROMIUM ?? '/usr/bin/chromium';

/** Why the browser tests cannot run here, if they cannot (the reason `skipWhenMissing` prints). */
export function chromiumMissing(): string | undefined {
  return existsSync(CHROMIUM)
    ? undefined
    : `${CHROMIUM} not found: apt-get install chromium (.ci/run does), or set STRAND_CHROMIUM`;
}

/** The test browser and one page of the given width and height. */
export async function openBrowserPage(
  width: number,
  height: number,
): Promise<{ browser: Browser; page: Page }> {
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  const page = await (await browser.newContext({ viewport: { width, height } })).newPage();
  return { browser, page };
}

/** A `strand console` process on the test stack. */
export interface RunningConsole {
  child: ChildProcess;
  url: string;
  /** What the console printed so far. */
  log: () => string;
  stop: () => Promise<void>;
}

/** Starts `strand console --port 0 <args>` and resolves with its URL once it listens. */
export function startConsole(args: string[] = []): Promise<RunningConsole> {
  const { brokers, registryUrl } = stack();
  const child = spawn(process.execPath, ['dist/cli/main.js', 'console', '--port', '0', ...args], {
    env: {
      ...process.env,
      STRAND_BROKERS: brokers.join(','),
      STRAND_REGISTRY_URL: registryUrl,
      NO_COLOR: '1',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const stop = () =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      const kill = setTimeout(() => child.kill('SIGKILL'), 10_000);
      child.once('exit', () => {
        clearTimeout(kill);
        resolve();
      });
      child.kill('SIGTERM');
    });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`console did not start: ${out}`)), 30_000);
    const onData = (d: Buffer) => {
      out += d.toString();
      const m = /Strand console on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1]!, log: () => out, stop });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`console exited with ${code}: ${out}`)));
  });
}
