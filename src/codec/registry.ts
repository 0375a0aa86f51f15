import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import registryPkg from '@kafkajs/confluent-schema-registry';
import avro from 'avsc';
import { isStrandError, tlsProblem } from '../errors.js';
import {
  RegistryAccessError,
  RegistryUnavailableError,
  SchemaNotFoundError,
  SchemaRejectedError,
} from './errors.js';

const { SchemaRegistry } = registryPkg;
type Client = InstanceType<typeof SchemaRegistry>;

/** A parsed Avro schema (avsc `Type`). */
export type AvroType = avro.Type;

/** How to reach the schema registry (Confluent API). */
export interface RegistryOptions {
  /** Base URL of the Confluent-compatible API, e.g. `http://127.0.0.1:8081/apis/ccompat/v7`. */
  url: string;
  /** Basic auth for the registry. The password is never logged. */
  auth?: { username: string; password: string };
  /** TLS for an `https://` URL: the CA to trust (PEM), a client certificate and key for mutual TLS. */
  tls?: { ca?: string; cert?: string; key?: string; rejectUnauthorized?: boolean };
  /**
   * How long one operation keeps retrying an unreachable registry before failing.
   * @defaultValue 10000
   */
  timeoutMs?: number;
}

export type Compatibility =
  | 'BACKWARD'
  | 'BACKWARD_TRANSITIVE'
  | 'FORWARD'
  | 'FORWARD_TRANSITIVE'
  | 'FULL'
  | 'FULL_TRANSITIVE'
  | 'NONE';

const NETWORK =
  /ECONN|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|EAI_AGAIN|EPIPE|socket hang up|timeout|network/i;

type Classified = 'not-found' | 'rejected' | 'unavailable' | 'unauthorized' | 'tls' | 'other';

function classify(error: unknown): Classified {
  if (isStrandError(error)) return error.retriable ? 'unavailable' : 'other';
  const status = (error as { status?: number }).status;
  const message = error instanceof Error ? error.message : String(error);
  if (status === 401 || status === 403) return 'unauthorized';
  if (tlsProblem(error)) return 'tls';
  if (status === 404 || /does not match any schema|not found/i.test(message)) return 'not-found';
  if (status === 409 || status === 422) return 'rejected';
  if (status === undefined || status === 0 || status >= 500 || NETWORK.test(message)) return 'unavailable';
  return 'other';
}

/**
 * The registry client's calls have no timeout of their own (the gateway's HTTP calls have 5 s): one
 * that never answers would hold its caller for good. After `ms` it counts as unavailable (retried
 * within the gateway's deadline; registering the same schema again gives the same id).
 */
function answered<T>(call: Promise<T>, ms = 10_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`schema registry request timeout after ${ms} ms`)), ms);
  });
  return Promise.race([call, late]).finally(() => clearTimeout(timer));
}

function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  // The client prefixes its client id ("strand - "); Apicurio prefixes the Java exception class.
  return (message.split('\n')[0] ?? message)
    .replace(/^[\w-]+ - /, '')
    .replace(/^(?:[a-z]+\.)+[A-Za-z]+Exception: /, '');
}

/** Parses an Avro schema, failing with a message that names the problem. */
export function parseAvroSchema(schema: unknown): AvroType {
  return avro.Type.forSchema(schema as avro.Schema, { wrapUnions: false });
}

/**
 * The registry as Strand uses it: schema ids by subject (registered or looked up) and writer
 * schemas by id, each cached for the life of the process (ids are immutable), with bounded retries
 * while the registry is unreachable.
 */
export class SchemaRegistryGateway {
  readonly url: string;
  private readonly client: Client;
  private readonly timeoutMs: number;
  private readonly typesById = new Map<number, Promise<AvroType>>();
  private readonly idsBySubject = new Map<string, number>();
  private readonly pendingIds = new Map<string, Promise<number>>();
  /** Ids whose writer schema is in memory: decoding them needs no registry call. */
  private readonly knownIds = new Set<number>();
  /** Parsed writer schemas by id, once fetched (for decoding without a promise). */
  private readonly knownTypes = new Map<number, AvroType>();
  private readonly agent: HttpAgent;
  private readonly authHeader: string | undefined;
  private readonly username: string | undefined;

  constructor(opts: RegistryOptions) {
    this.url = opts.url.replace(/\/+$/, '');
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    // One agent for the client's calls and ours: kept-alive connections, the TLS trust settings.
    this.agent = this.url.startsWith('https:')
      ? new HttpsAgent({ keepAlive: true, ...(opts.tls ?? {}) })
      : new HttpAgent({ keepAlive: true });
    this.username = opts.auth?.username;
    this.authHeader = opts.auth
      ? `Basic ${Buffer.from(`${opts.auth.username}:${opts.auth.password}`).toString('base64')}`
      : undefined;
    this.client = new SchemaRegistry({
      host: this.url,
      clientId: 'strand',
      // Retries are ours (bounded by time, classified); the client's own would hide 404s behind delays.
      retry: { retries: 0 },
      agent: this.agent,
      ...(opts.auth ? { auth: opts.auth } : {}),
    });
  }

  /** Closes kept-alive connections (call when done with the gateway). */
  close(): void {
    this.agent.destroy();
  }

  private async withRetry<T>(what: string, op: () => Promise<T>): Promise<T> {
    const deadline = Date.now() + this.timeoutMs;
    let delay = 100;
    for (;;) {
      try {
        return await op();
      } catch (error) {
        const kind = classify(error);
        if (kind === 'unauthorized') {
          const who = this.username ? ` of user "${this.username}"` : ' (no credentials given)';
          throw new RegistryAccessError(
            `schema registry at ${this.url} refused the credentials${who} while ${what}: HTTP ${(error as { status?: number }).status}`,
            error,
          );
        }
        if (kind === 'tls') {
          throw new RegistryAccessError(
            `TLS to the schema registry at ${this.url} failed while ${what}: ${firstLine(error)}; trust its CA with registry.tls.ca (STRAND_REGISTRY_CA_FILE)`,
            error,
          );
        }
        if (kind !== 'unavailable') throw error;
        const remaining = deadline - Date.now();
        if (remaining <= 0) {
          throw new RegistryUnavailableError(
            `schema registry at ${this.url} unreachable while ${what} (retried for ${Math.round(this.timeoutMs / 1000)}s): ${firstLine(error)}`,
            error,
          );
        }
        await new Promise((r) => setTimeout(r, Math.min(delay, remaining)));
        delay = Math.min(delay * 2, 2000);
      }
    }
  }

  /**
   * The id of `schema` under `subject`: registered when `autoRegister` (the subject's compatibility
   * rule decides whether it is accepted), else looked up only.
   */
  async schemaId(
    subject: string,
    schema: object,
    opts: { autoRegister: boolean; compatibility?: Compatibility },
  ): Promise<number> {
    const key = `${subject}\u0000${JSON.stringify(schema)}`;
    const cached = this.idsBySubject.get(key);
    if (cached !== undefined) return cached;
    // Concurrent first calls share one registration (parallel ones race on the subject's rules).
    let pending = this.pendingIds.get(key);
    if (!pending) {
      pending = this.resolveId(subject, schema, opts).finally(() => this.pendingIds.delete(key));
      this.pendingIds.set(key, pending);
    }
    const id = await pending;
    this.idsBySubject.set(key, id);
    return id;
  }

  private resolveId(
    subject: string,
    schema: object,
    opts: { autoRegister: boolean; compatibility?: Compatibility },
  ): Promise<number> {
    return this.withRetry(`resolving the schema id for ${subject}`, async () => {
      try {
        if (!opts.autoRegister) {
          return await this.client.getRegistryIdBySchema(subject, schema as never);
        }
        // The client refuses to register unless told the subject's current rule, so pass it.
        const level = await this.ensureCompatibility(subject, opts.compatibility ?? 'BACKWARD');
        try {
          const { id } = await answered(
            this.client.register(
              { type: 'AVRO' as never, schema: JSON.stringify(schema) },
              { subject, compatibility: level as never },
            ),
          );
          return id;
        } catch (error) {
          // Another process registering the same schema at the same moment can get a conflict the
          // schema itself did not cause: when the schema is under the subject now, that is its id.
          if (classify(error) !== 'rejected') throw error;
          const id = await this.client.getRegistryIdBySchema(subject, schema as never).catch(() => undefined);
          if (id === undefined) throw error;
          return id;
        }
      } catch (error) {
        const kind = classify(error);
        if (kind === 'not-found' && !opts.autoRegister) {
          throw new SchemaNotFoundError(
            `schema is not registered under subject ${subject} (autoRegister is off): ${firstLine(error)}`,
            error,
          );
        }
        if (kind === 'rejected') {
          throw new SchemaRejectedError(
            `registry rejected the schema for ${subject}: ${firstLine(error)}`,
            error,
          );
        }
        throw error;
      }
    });
  }

  /**
   * The subject's compatibility rule, set to `compatibility` when the subject has none yet. Several
   * processes starting at once all see none and all set it: the registry (Apicurio) answers the
   * losers 409, and the rule the winner set is read back.
   */
  private async ensureCompatibility(subject: string, compatibility: Compatibility): Promise<string> {
    const current = await this.compatibilityOf(subject);
    if (current) return current;
    const res = await this.putCompatibility(subject, compatibility);
    if (res.status === 200) return compatibility;
    if (res.status === 409) {
      const set = await this.compatibilityOf(subject);
      if (set) return set;
    }
    throw Object.assign(new Error(`could not set ${compatibility} on ${subject}: HTTP ${res.status}`), {
      status: res.status === 409 ? 503 : res.status, // a conflict with no rule to read back: try again
    });
  }

  /** The subject's own compatibility rule (`GET /config/{subject}`); undefined when it has none. */
  private async compatibilityOf(subject: string): Promise<string | undefined> {
    const res = await this.http('GET', `/config/${encodeURIComponent(subject)}`);
    if (res.status === 404) return undefined;
    if (res.status !== 200)
      throw Object.assign(new Error(`GET /config/${subject}: HTTP ${res.status}`), { status: res.status });
    const { compatibilityLevel } = (await res.json()) as { compatibilityLevel?: string };
    return compatibilityLevel ? compatibilityLevel.toUpperCase() : undefined;
  }

  private putCompatibility(subject: string, compatibility: Compatibility) {
    return this.http('PUT', `/config/${encodeURIComponent(subject)}`, { compatibility });
  }

  /** Sets the compatibility rule of a subject (`PUT /config/{subject}`). */
  async setCompatibility(subject: string, compatibility: Compatibility): Promise<void> {
    const res = await this.putCompatibility(subject, compatibility);
    if (res.status !== 200)
      throw new SchemaRejectedError(`could not set ${compatibility} on ${subject}: HTTP ${res.status}`);
  }

  private http(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; json(): Promise<unknown> }> {
    const url = new URL(`${this.url}${path}`);
    const headers: Record<string, string> = { 'content-type': 'application/vnd.schemaregistry.v1+json' };
    if (this.authHeader) headers.authorization = this.authHeader;
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise((resolve, reject) => {
      const req = send(url, { method, headers, agent: this.agent, timeout: 5000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', fail);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({ status: res.statusCode ?? 0, json: async () => JSON.parse(text) });
        });
      });
      function fail(error: Error) {
        reject(Object.assign(new Error(`network: ${error.message}`), { status: 0, cause: error }));
      }
      req.on('timeout', () => req.destroy(new Error('timeout after 5000 ms')));
      req.on('error', fail);
      req.end(payload);
    });
  }

  /**
   * A read-only GET on the registry API (`/subjects`, `/config/{subject}`, …) with this gateway's
   * credentials and TLS settings: the status code and the parsed body (undefined when not JSON).
   */
  async get(path: string): Promise<{ status: number; body: unknown }> {
    const res = await this.http('GET', path);
    return { status: res.status, body: await res.json().catch(() => undefined) };
  }

  /** True when the writer schema of `id` is already in memory. */
  isKnown(id: number): boolean {
    return this.knownIds.has(id);
  }

  /** The writer schema of `id` if it was fetched already. */
  cachedType(id: number): AvroType | undefined {
    return this.knownTypes.get(id);
  }

  /**
   * The writer schema for `id`. Throws `SchemaNotFoundError` when the registry answers that the id
   * does not exist, `RegistryUnavailableError` when it does not answer.
   */
  async typeById(id: number): Promise<AvroType> {
    let pending = this.typesById.get(id);
    if (!pending) {
      pending = this.withRetry(`fetching schema id ${id}`, async () => {
        try {
          const res = await this.http('GET', `/schemas/ids/${id}`);
          if (res.status === 404)
            throw Object.assign(new Error(`schema id ${id} not found`), { status: 404 });
          if (res.status !== 200)
            throw Object.assign(new Error(`HTTP ${res.status}`), { status: res.status });
          const { schema, schemaType } = (await res.json()) as { schema: string; schemaType?: string };
          if (schemaType && schemaType !== 'AVRO') {
            throw new SchemaRejectedError(`schema id ${id} is ${schemaType}, not AVRO`);
          }
          return parseAvroSchema(JSON.parse(schema));
        } catch (error) {
          if (classify(error) === 'not-found')
            throw new SchemaNotFoundError(`schema id ${id} is not in the registry`, error);
          throw error;
        }
      });
      this.typesById.set(id, pending);
      // A failure is not cached: the next record asks again (the registry may be back).
      pending.then(
        (type) => {
          this.knownIds.add(id);
          this.knownTypes.set(id, type);
        },
        () => this.typesById.delete(id),
      );
    }
    return pending;
  }
}
