import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import { ConfigError } from '../config/errors.js';

/**
 * `/metrics` (Prometheus text), `/healthz` (the event loop answers) and `/readyz` (ready() is true).
 * Returns the server; close it on stop. A port it cannot listen on is a ConfigError naming
 * `option`, the setting that chose the port (`metrics.port` for a worker, `--port` for the exporter).
 */
export async function startMetricsServer(opts: {
  port: number;
  host: string;
  registry: Registry;
  ready: () => boolean;
  option?: string;
}): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      opts.registry.metrics().then(
        (body) => {
          res.writeHead(200, { 'content-type': opts.registry.contentType });
          res.end(body);
        },
        (error: unknown) => {
          res.writeHead(500, { 'content-type': 'text/plain' });
          res.end(String(error));
        },
      );
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
      return;
    }
    if (path === '/readyz') {
      const ready = opts.ready();
      res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' });
      res.end(ready ? 'ready\n' : 'not ready\n');
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    res.end('not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error) => reject(listenError(error, opts)));
    server.listen(opts.port, opts.host, () => resolve());
  });
  return server;
}

/** Node's "listen EADDRINUSE: address already in use 0.0.0.0:9470" says neither what nor how. */
function listenError(
  error: NodeJS.ErrnoException,
  opts: { port: number; host: string; option?: string },
): Error {
  const option = opts.option ?? 'metrics.port';
  const why =
    error.code === 'EADDRINUSE'
      ? 'is already in use'
      : error.code === 'EACCES'
        ? 'needs privileges this process lacks'
        : error.code === 'EADDRNOTAVAIL'
          ? 'is on an address this machine does not have'
          : undefined;
  if (!why) return error;
  return new ConfigError(
    option,
    `port ${opts.port} on ${opts.host} ${why}; it serves this process's /metrics, /healthz and /readyz: set ${option} to a free port (0 picks one)`,
  );
}
