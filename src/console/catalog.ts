import type { SchemaRegistryGateway } from '../codec/index.js';

export interface SubjectSummary {
  subject: string;
  versions: number[];
  compatibility: string;
}

export interface SchemaVersion {
  subject: string;
  version: number;
  id: number;
  schema: unknown;
}

/**
 * The registry as the console reads it (subjects, versions, compatibility, which subject/version a
 * schema id is), each answer cached for `ttlMs` so live pages do not call the registry every refresh.
 */
export class SchemaCatalog {
  private readonly cache = new Map<string, { at: number; value: Promise<unknown> }>();

  constructor(
    readonly gateway: SchemaRegistryGateway,
    private readonly ttlMs = 15_000,
  ) {}

  private cached<T>(key: string, load: () => Promise<T>, ttlMs = this.ttlMs): Promise<T> {
    const hit = this.cache.get(key);
    if (hit && Date.now() - hit.at < ttlMs) return hit.value as Promise<T>;
    const value = load();
    this.cache.set(key, { at: Date.now(), value });
    value.catch(() => this.cache.delete(key));
    return value;
  }

  private async json(path: string, allow404 = false): Promise<unknown> {
    const res = await this.gateway.get(path);
    if (res.status === 404 && allow404) return undefined;
    if (res.status !== 200) {
      const message = (res.body as { message?: string } | undefined)?.message;
      throw new Error(`schema registry GET ${path}: HTTP ${res.status}${message ? ` (${message})` : ''}`);
    }
    return res.body;
  }

  subjects(): Promise<string[]> {
    return this.cached('subjects', async () => ((await this.json('/subjects')) as string[]).sort());
  }

  versions(subject: string): Promise<number[]> {
    return this.cached(`versions:${subject}`, async () =>
      ((await this.json(`/subjects/${encodeURIComponent(subject)}/versions`)) as number[]).sort(
        (a, b) => a - b,
      ),
    );
  }

  /** The subject's compatibility rule, else the registry's global one. */
  compatibility(subject: string): Promise<string> {
    return this.cached(`config:${subject}`, async () => {
      const own = (await this.json(`/config/${encodeURIComponent(subject)}`, true)) as
        | { compatibilityLevel?: string }
        | undefined;
      if (own?.compatibilityLevel) return own.compatibilityLevel;
      const global = (await this.json('/config', true)) as { compatibilityLevel?: string } | undefined;
      return global?.compatibilityLevel ? `${global.compatibilityLevel} (global)` : 'unknown';
    });
  }

  async summary(subject: string): Promise<SubjectSummary> {
    const [versions, compatibility] = await Promise.all([
      this.versions(subject),
      this.compatibility(subject),
    ]);
    return { subject, versions, compatibility };
  }

  version(subject: string, version: number): Promise<SchemaVersion> {
    // A registered version never changes.
    return this.cached(
      `version:${subject}:${version}`,
      async () => {
        const body = (await this.json(`/subjects/${encodeURIComponent(subject)}/versions/${version}`)) as {
          id: number;
          version: number;
          schema: string;
        };
        let schema: unknown = body.schema;
        try {
          schema = JSON.parse(body.schema);
        } catch {
          // not JSON: shown as is
        }
        return { subject, version: body.version, id: body.id, schema };
      },
      Number.POSITIVE_INFINITY,
    );
  }

  /** Subject and version of schema `id`, preferring `subject` when the id is registered under several. */
  async whereIs(id: number, subject?: string): Promise<{ subject: string; version: number } | undefined> {
    const list = await this.cached(
      `id:${id}`,
      async () =>
        ((await this.json(`/schemas/ids/${id}/versions`, true)) as
          | { subject: string; version: number }[]
          | undefined) ?? [],
      60_000,
    ).catch(() => []);
    return list.find((x) => x.subject === subject) ?? list[0];
  }
}
