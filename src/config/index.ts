export { ConfigError } from './errors.js';
export {
  avroSchemaObject,
  connectionSchema,
  duration,
  parseDuration,
  parseOptions,
  registrySchema,
} from './validate.js';
