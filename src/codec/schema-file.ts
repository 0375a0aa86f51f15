import { readFileSync } from 'node:fs';
import { ConfigError } from '../config/errors.js';
import { parseAvroSchema } from './registry.js';

/** Reads and checks an `.avsc` file; one-line errors for a missing file, bad JSON or a bad schema. */
export function loadAvroSchemaFile(path: string): object {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new ConfigError(
      'schema',
      code === 'ENOENT'
        ? `schema file ${path} not found`
        : `cannot read ${path}: ${(error as Error).message}`,
    );
  }
  let schema: unknown;
  try {
    schema = JSON.parse(text);
  } catch (error) {
    throw new ConfigError('schema', `${path} is not JSON: ${(error as Error).message}`);
  }
  try {
    parseAvroSchema(schema);
  } catch (error) {
    throw new ConfigError('schema', `${path} is not a valid Avro schema: ${(error as Error).message}`);
  }
  return schema as object;
}
