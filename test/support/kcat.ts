import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface RawRecord {
  partition: number;
  offset: number;
  key: string | null;
  value: Buffer | null;
  headers: Record<string, string>;
}

/**
 * Reads a topic with kcat, an independent client (librdkafka), as raw bytes and headers.
 */
export async function kcatConsume(brokers: string[], topic: string, count: number): Promise<RawRecord[]> {
  const { stdout } = await run(
    'kcat',
    ['-C', '-b', brokers.join(','), '-t', topic, '-o', 'beginning', '-c', String(count), '-e', '-J', '-q'],
    // kcat's JSON escapes control bytes and passes bytes >= 0x80 through: reading it as latin1 maps
    // every byte to one char, so Buffer.from(s, 'latin1') gives back the exact bytes.
    { timeout: 60_000, maxBuffer: 256 * 1024 * 1024, encoding: 'latin1' },
  );
  return stdout
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const r = JSON.parse(line) as {
        partition: number;
        offset: number;
        key: string | null;
        payload: string | null;
        headers?: string[];
      };
      const headers: Record<string, string> = {};
      const h = r.headers ?? [];
      for (let i = 0; i + 1 < h.length; i += 2)
        headers[h[i]!] = Buffer.from(h[i + 1]!, 'latin1').toString('utf8');
      return {
        partition: r.partition,
        offset: r.offset,
        key: r.key === null ? null : Buffer.from(r.key, 'latin1').toString('utf8'),
        value: r.payload === null ? null : Buffer.from(r.payload, 'latin1'),
        headers,
      };
    });
}

/**
 * Produces raw bytes with kcat (poison records a Strand producer would never write). Each value
 * goes through a file, which kcat sends whole as one message, so any byte is safe.
 */
export async function kcatProduce(
  brokers: string[],
  topic: string,
  records: { key?: string; value: Buffer; partition?: number }[],
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'strand-kcat-'));
  try {
    for (const [i, r] of records.entries()) {
      const args = ['-P', '-b', brokers.join(','), '-t', topic];
      if (r.partition !== undefined) args.push('-p', String(r.partition));
      if (r.value.length === 0) {
        // kcat skips empty files; an empty line with -Z is sent as a NULL value (a tombstone).
        await new Promise<void>((done, fail) => {
          const child = execFile('kcat', [...args, '-K', '\t', '-Z'], { timeout: 30_000 }, (e) =>
            e ? fail(e) : done(),
          );
          child.stdin?.end(`${r.key ?? ''}\t\n`);
        });
        continue;
      }
      const file = join(dir, `v${i}`);
      writeFileSync(file, r.value);
      if (r.key !== undefined) args.push('-k', r.key);
      args.push(file);
      await run('kcat', args, { timeout: 30_000 });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
