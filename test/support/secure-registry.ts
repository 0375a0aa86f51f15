import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { createServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { selfSignedCertificate } from '../../src/devstack/certificate.js';

/**
 * The real registry behind HTTPS with basic auth, as production registries are run: a TLS
 * terminating proxy with a fresh self-signed certificate (openssl) that answers 401 without the
 * right credentials and forwards everything else to the registry.
 */
export class SecureRegistry {
  private server: Server | undefined;
  private dir = '';
  ca = '';
  url = '';
  requests = 0;
  refused = 0;

  constructor(
    private readonly upstream: string,
    readonly username: string,
    readonly password: string,
  ) {}

  async start(): Promise<this> {
    this.dir = mkdtempSync(join(tmpdir(), 'strand-tls-'));
    const made = await selfSignedCertificate(this.dir, { commonName: '127.0.0.1', days: 1 });
    if (!made) throw new Error('openssl is needed to make the test certificate');
    this.ca = readFileSync(made.certFile, 'utf8');
    const key = made.keyFile;
    const expected = `Basic ${Buffer.from(`${this.username}:${this.password}`).toString('base64')}`;
    const target = new URL(this.upstream);
    this.server = createServer({ key: readFileSync(key), cert: this.ca }, (req, res) => {
      this.requests++;
      if (req.headers.authorization !== expected) {
        this.refused++;
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error_code: 40101, message: 'Unauthorized' }));
        return;
      }
      const { authorization: _a, host: _h, ...headers } = req.headers;
      const forward = request(
        { host: target.hostname, port: target.port, path: req.url, method: req.method, headers },
        (upstream) => {
          res.writeHead(upstream.statusCode ?? 502, upstream.headers);
          upstream.pipe(res);
        },
      );
      forward.on('error', () => {
        res.writeHead(502);
        res.end();
      });
      req.pipe(forward);
    });
    await new Promise<void>((done) => this.server!.listen(0, '127.0.0.1', done));
    const address = this.server.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    this.url = `https://127.0.0.1:${port}${target.pathname.replace(/\/+$/, '')}`;
    return this;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((done) => (this.server ? this.server.close(() => done()) : done()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
