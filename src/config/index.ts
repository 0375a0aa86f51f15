export { ConfigError } from './errors.js';
export {
  avroSchemaObject,
  compatibilitySchema,
  connectionSchema,
  duration,
  parseDuration,
  parseOptions,
  registrySchema,
} from './validate.js';
