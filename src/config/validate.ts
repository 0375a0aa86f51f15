import ms from 'ms';
import { z } from 'zod';
import { ConfigError } from './errors.js';

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out;
}

/**
 * Validates options with a zod schema; the first problem becomes a `ConfigError` naming the
 * field's path, prefixed with the component (`worker: concurrency: expected ...`).
 */
export function parseOptions<S extends z.ZodType>(schema: S, input: unknown, component: string): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  if (!issue) throw new ConfigError(component, 'invalid options');
  const path = formatPath(issue.path);
  const error = new ConfigError(path, issue.message);
  error.message = `${component} options: ${error.message}`;
  throw error;
}

/** A duration: milliseconds as a number, or a string like `"10s"`, `"1m"`, `"500ms"`. */
export const duration = z.union([z.number().int().nonnegative(), z.string()]).transform((value, ctx) => {
  if (typeof value === 'number') return value;
  const parsed = ms(value as ms.StringValue);
  if (typeof parsed !== 'number' || !Number.isFinite(parsed) || parsed < 0) {
    ctx.addIssue({ code: 'custom', message: `expected a duration like "10s", got "${value}"` });
    return z.NEVER;
  }
  return parsed;
});

/** Parses a duration flag or option outside a schema (`"1s"` → 1000). */
export function parseDuration(value: string | number, path: string): number {
  const r = duration.safeParse(value);
  if (!r.success) throw new ConfigError(path, r.error.issues[0]?.message ?? 'bad duration');
  return r.data;
}

/** TLS: `true` for the system CAs, or explicit PEMs (Kafka and Redis take the same shape). */
export const tlsSchema = z.union([
  z.boolean(),
  z.object({
    ca: z.string().optional(),
    cert: z.string().optional(),
    key: z.string().optional(),
    rejectUnauthorized: z.boolean().optional(),
  }),
]);

export const connectionSchema = z
  .object({
    brokers: z
      .array(z.string().regex(/^[^\s:]+:\d+$/, 'expected host:port'))
      .min(1, 'expected at least one broker'),
    clientId: z.string().min(1).optional(),
    tls: tlsSchema.optional(),
    sasl: z
      .object({
        mechanism: z.enum(['plain', 'scram-sha-256', 'scram-sha-512']),
        username: z.string().min(1),
        password: z.string(),
      })
      .optional(),
    connectionTimeoutMs: z.number().int().positive().optional(),
    requestTimeoutMs: z.number().int().positive().optional(),
    retries: z.number().int().min(0).optional(),
  })
  .strict();

export const registrySchema = z
  .object({
    url: z.url({ message: 'expected the registry URL, e.g. http://127.0.0.1:8081/apis/ccompat/v7' }),
    auth: z.object({ username: z.string(), password: z.string() }).optional(),
    tls: tlsSchema.optional(),
    timeoutMs: z.number().int().positive().optional(),
  })
  .strict();

/** The registry compatibility level a producer sets on a subject it registers (default BACKWARD). */
export const compatibilitySchema = z
  .enum([
    'BACKWARD',
    'BACKWARD_TRANSITIVE',
    'FORWARD',
    'FORWARD_TRANSITIVE',
    'FULL',
    'FULL_TRANSITIVE',
    'NONE',
  ])
  .default('BACKWARD');

export const avroSchemaObject = z.custom<object>(
  (v) => typeof v === 'object' && v !== null && !Array.isArray(v),
  'expected an Avro schema object (parsed .avsc JSON)',
);
