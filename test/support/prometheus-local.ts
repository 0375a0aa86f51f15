/**
 * Prometheus on this machine with the repository's scrape job, relabelling, alert and recording
 * rules (deploy/prometheus), scraping local workers or `strand exporter` (docs/operations.md):
 *
 *   node --import tsx test/support/prometheus-local.ts [host:port ...]          (default 127.0.0.1:9464)
 *   node --import tsx test/support/prometheus-local.ts --check [host:port ...]  (promtool check config only)
 *
 * UI and API on $PROMETHEUS_ADDR (default 127.0.0.1:9090); scrape and rule evaluation every 5 s;
 * config and data in a temporary directory removed on Ctrl-C. The strand-kubernetes job is left
 * out: Debian's prometheus and promtool are built without Kubernetes service discovery.
 */
import { checkConfig, PrometheusServer, repositoryConfig, requirePrometheusTools } from './prometheus.js';

const args = process.argv.slice(2);
const check = args[0] === '--check';
if (check) args.shift();
const targets = args.length > 0 ? args : ['127.0.0.1:9464'];

try {
  requirePrometheusTools();
} catch (error) {
  process.stderr.write(`${(error as Error).message}\n`);
  process.exit(1);
}
const { config, files } = repositoryConfig({ targets, interval: '5s' });
if (check) {
  const result = checkConfig(config, files);
  process.stdout.write(result.out);
  process.exit(result.code);
}
const server = await PrometheusServer.start(config, files, {
  address: process.env.PROMETHEUS_ADDR ?? '127.0.0.1:9090',
  echo: true,
});
process.stdout.write(`Prometheus on ${server.url} scraping ${targets.join(', ')} (Ctrl-C stops it)\n`);
const signalled = new Promise((resolve) => {
  process.once('SIGINT', resolve);
  process.once('SIGTERM', resolve);
});
const code = await Promise.race([server.exited, signalled.then(() => 0)]);
await server.stop();
process.exit(code ?? 1);
