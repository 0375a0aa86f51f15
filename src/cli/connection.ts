import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { RegistryOptions } from '../codec/index.js';
import { stackStatus } from '../devstack/index.js';
import { connectionFromEnv, type KafkaConnection } from '../kafka/client.js';

/** A person is waiting: fail within seconds when the brokers do not answer. */
export const CLI_RETRIES = 2;

export interface ConnectionFlags {
  brokers?: string;
  registryUrl?: string;
}

/** Adds `--brokers` and `--registry-url` (defaults: environment, then the running devstack, then localhost). */
export function withConnectionFlags(cmd: Command, opts: { registry?: boolean } = {}): Command {
  cmd.option('--brokers <list>', 'bootstrap brokers, comma-separated (env STRAND_BROKERS)');
  if (opts.registry !== false)
    cmd.option('--registry-url <url>', 'schema registry Confluent API URL (env STRAND_REGISTRY_URL)');
  return cmd;
}

/**
 * The registry settings from the environment: `STRAND_REGISTRY_USERNAME`/`STRAND_REGISTRY_PASSWORD`
 * (basic auth) and `STRAND_REGISTRY_CA_FILE` (a CA to trust for an https URL).
 */
export function registryFromEnv(url: string, env: NodeJS.ProcessEnv = process.env): RegistryOptions {
  const registry: RegistryOptions = { url };
  if (env.STRAND_REGISTRY_USERNAME)
    registry.auth = { username: env.STRAND_REGISTRY_USERNAME, password: env.STRAND_REGISTRY_PASSWORD ?? '' };
  if (env.STRAND_REGISTRY_CA_FILE) registry.tls = { ca: readFileSync(env.STRAND_REGISTRY_CA_FILE, 'utf8') };
  return registry;
}

export function resolveConnection(flags: ConnectionFlags): {
  kafka: KafkaConnection;
  registryUrl: string;
  registry: RegistryOptions;
} {
  const env = { ...process.env };
  if (flags.brokers) env.STRAND_BROKERS = flags.brokers;
  const running = stackStatus();
  // Its addresses also when a part is down: the error then names the stack's address.
  const stackUp = running?.alive.some(Boolean) ? running : undefined;
  const kafka = connectionFromEnv(env, stackUp?.brokers);
  kafka.clientId = 'strand-cli';
  kafka.retries = CLI_RETRIES;
  const registryUrl =
    flags.registryUrl ??
    process.env.STRAND_REGISTRY_URL ??
    stackUp?.registryUrl ??
    'http://127.0.0.1:8081/apis/ccompat/v7';
  return { kafka, registryUrl, registry: registryFromEnv(registryUrl) };
}
