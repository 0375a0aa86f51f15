export { AvroCodec, assertValid, type DecodedValue, validationProblems } from './codec.js';
export {
  DecodeError,
  type DecodeReason,
  RegistryAccessError,
  RegistryUnavailableError,
  SchemaNotFoundError,
  SchemaRejectedError,
  ValidationError,
} from './errors.js';
export {
  type AvroType,
  type Compatibility,
  parseAvroSchema,
  type RegistryOptions,
  SchemaRegistryGateway,
} from './registry.js';
export { loadAvroSchemaFile } from './schema-file.js';
export { encodeWire, HEADER_SIZE, MAGIC_BYTE, parseWire } from './wire.js';
