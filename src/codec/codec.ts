import type avro from 'avsc';
import { DecodeError, SchemaNotFoundError, ValidationError } from './errors.js';
import { type AvroType, parseAvroSchema, type SchemaRegistryGateway } from './registry.js';
import { encodeWire, parseWire } from './wire.js';

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'null';
  const json = JSON.stringify(value);
  return json === undefined ? typeof value : json.length > 40 ? `${json.slice(0, 37)}...` : json;
}

function typeName(type: avro.Type | undefined): string {
  if (!type) return 'unknown';
  const t = type as unknown as { typeName?: string; name?: string; branchName?: string };
  return t.name ?? t.branchName ?? t.typeName ?? 'unknown';
}

const fieldNames = new WeakMap<AvroType, Set<string>>();

function recordFields(type: AvroType): Set<string> | undefined {
  if (type.typeName !== 'record') return undefined;
  let names = fieldNames.get(type);
  if (!names) {
    names = new Set((type as unknown as { fields: { name: string }[] }).fields.map((f) => f.name));
    fieldNames.set(type, names);
  }
  return names;
}

function hasUnknownFields(type: AvroType, data: unknown): boolean {
  const known = recordFields(type);
  if (!known || !data || typeof data !== 'object') return false;
  for (const key in data) if (!known.has(key)) return true;
  return false;
}

/** Every field of `data` that does not fit `type`, as `path: expected X, got Y`. */
export function validationProblems(type: AvroType, data: unknown): string[] {
  const problems: string[] = [];
  if (type.isValid(data) && !hasUnknownFields(type, data)) return problems;
  type.isValid(data, {
    errorHook: (path: string[], value: unknown, t: avro.Type) => {
      problems.push(
        `${path.length ? path.join('.') : '(root)'}: expected ${typeName(t)}, got ${describe(value)}`,
      );
    },
  });
  // isValid ignores unknown fields; a typo in a field name would silently drop data.
  const known = recordFields(type);
  if (known && data && typeof data === 'object' && !Array.isArray(data)) {
    for (const key of Object.keys(data))
      if (!known.has(key)) problems.push(`${key}: not a field of ${typeName(type)}`);
  }
  return problems;
}

/** Throws a `ValidationError` naming every bad field of `data`. */
export function assertValid(type: AvroType, data: unknown, label = 'job data'): void {
  const problems = validationProblems(type, data);
  if (problems.length > 0) {
    throw new ValidationError(
      `${label} does not match schema ${typeName(type)}: ${problems.join('; ')}`,
      problems,
    );
  }
}

export interface DecodedValue<T> {
  schemaId: number;
  data: T;
}

/**
 * Confluent-wire-format Avro codec. Decodes with the writer schema from the registry, resolved to
 * an optional reader schema (schema evolution), and raises `DecodeError` with a reason for bytes
 * that can never decode. An unreachable registry raises `RegistryUnavailableError` instead (retriable).
 */
export class AvroCodec {
  private readonly reader: AvroType | undefined;
  private readonly resolvers = new Map<number, avro.Resolver | DecodeError>();

  constructor(
    private readonly registry: SchemaRegistryGateway,
    opts: { readerSchema?: object } = {},
  ) {
    this.reader = opts.readerSchema ? parseAvroSchema(opts.readerSchema) : undefined;
  }

  encode(schemaId: number, type: AvroType, data: unknown): Buffer {
    return encodeWire(schemaId, type.toBuffer(data));
  }

  /**
   * True when `value` decodes without a registry call (its writer schema is cached, or it is not
   * in the wire format at all and fails at once).
   */
  decodesLocally(value: Buffer | null | undefined): boolean {
    try {
      return this.registry.isKnown(parseWire(value).schemaId);
    } catch {
      return true;
    }
  }

  async decode<T = unknown>(value: Buffer | null | undefined): Promise<DecodedValue<T>> {
    const { schemaId, body } = parseWire(value);
    const byteLength = value?.length ?? 0;
    let writer: AvroType;
    try {
      writer = await this.registry.typeById(schemaId);
    } catch (error) {
      if (error instanceof SchemaNotFoundError) {
        throw new DecodeError('unknown-schema-id', `schema id ${schemaId} is not in the registry`, {
          byteLength,
          schemaId,
          cause: error,
        });
      }
      throw error;
    }
    return this.decodeBody<T>(schemaId, writer, body, byteLength);
  }

  /**
   * Decodes at once when the writer schema is cached (undefined when it is not); throws a
   * `DecodeError` for a value that can never decode.
   */
  decodeCached<T = unknown>(value: Buffer | null | undefined): DecodedValue<T> | undefined {
    const { schemaId, body } = parseWire(value);
    const writer = this.registry.cachedType(schemaId);
    if (!writer) return undefined;
    return this.decodeBody<T>(schemaId, writer, body, value?.length ?? 0);
  }

  private decodeBody<T>(
    schemaId: number,
    writer: AvroType,
    body: Buffer,
    byteLength: number,
  ): DecodedValue<T> {
    let resolver: avro.Resolver | undefined;
    if (this.reader) {
      let cached = this.resolvers.get(schemaId);
      if (!cached) {
        try {
          cached = this.reader.createResolver(writer);
        } catch (error) {
          cached = new DecodeError(
            'schema-mismatch',
            `writer schema ${schemaId} cannot be read as the reader schema: ${(error as Error).message}`,
            {
              byteLength,
              schemaId,
            },
          );
        }
        this.resolvers.set(schemaId, cached);
      }
      if (cached instanceof DecodeError) throw cached;
      resolver = cached;
    }
    const type = this.reader ?? writer;
    let decoded: { value: unknown; offset: number };
    try {
      decoded = type.decode(body, 0, resolver);
    } catch (error) {
      throw new DecodeError(
        'schema-mismatch',
        `body does not decode with schema ${schemaId}: ${(error as Error).message}`,
        {
          byteLength,
          schemaId,
          cause: error,
        },
      );
    }
    if (decoded.offset < 0) {
      throw new DecodeError(
        'truncated',
        `Avro body of ${body.length} bytes ends early for schema ${schemaId}`,
        {
          byteLength,
          schemaId,
        },
      );
    }
    if (decoded.offset !== body.length) {
      throw new DecodeError(
        'schema-mismatch',
        `${body.length - decoded.offset} bytes left over after decoding with schema ${schemaId}`,
        {
          byteLength,
          schemaId,
        },
      );
    }
    return { schemaId, data: decoded.value as T };
  }
}
