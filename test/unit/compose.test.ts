import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

interface Service {
  image: string;
  ports?: string[];
  environment?: Record<string, string>;
}

const compose = parse(readFileSync('docker-compose.yml', 'utf8')) as { services: Record<string, Service> };
const readme = readFileSync('docs/local-stack.md', 'utf8');

describe('docker-compose.yml', () => {
  it('offers the services, images and ports the README promises', () => {
    const services = compose.services;
    expect(Object.keys(services).sort()).toEqual(['grafana', 'kafka', 'prometheus', 'registry']);
    expect(services.kafka?.image).toMatch(/^apache\/kafka:4\.1\.\d+$/);
    expect(services.registry?.image).toMatch(/^apicurio\/apicurio-registry:3\./);
    expect(services.kafka?.ports).toContain('9092:9092');
    expect(services.registry?.ports).toContain('8081:8080');
    expect(services.prometheus?.ports).toContain('9090:9090');
    expect(services.grafana?.ports).toContain('3000:3000');
    for (const [name, svc] of Object.entries(services)) {
      expect(readme, `README mentions ${name}`).toContain(svc.image);
    }
  });

  it('runs Kafka in KRaft mode, advertised on the host port the README gives', () => {
    const env = compose.services.kafka?.environment ?? {};
    expect(env.KAFKA_PROCESS_ROLES).toBe('broker,controller');
    expect(env.KAFKA_ADVERTISED_LISTENERS).toContain('PLAINTEXT://127.0.0.1:9092');
    expect(readme).toContain('STRAND_BROKERS=127.0.0.1:9092');
    expect(readme).toContain('http://127.0.0.1:8081/apis/ccompat/v7');
  });
});
