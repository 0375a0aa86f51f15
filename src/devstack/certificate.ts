import { execFile } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Makes a self-signed certificate for 127.0.0.1 (it is its own CA) with openssl: `key.pem` and
 * `cert.pem` in `dir`. Undefined when openssl is not installed.
 */
export async function selfSignedCertificate(
  dir: string,
  opts: { commonName: string; days: number },
): Promise<{ keyFile: string; certFile: string } | undefined> {
  mkdirSync(dir, { recursive: true });
  const keyFile = join(dir, 'key.pem');
  const certFile = join(dir, 'cert.pem');
  try {
    await run('openssl', [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      keyFile,
      '-out',
      certFile,
      '-days',
      String(opts.days),
      '-subj',
      `/CN=${opts.commonName}`,
      '-addext',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
    ]);
  } catch {
    return undefined;
  }
  return { keyFile, certFile };
}
