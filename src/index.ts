export {
  AvroCodec,
  DecodeError,
  type DecodeReason,
  RegistryUnavailableError,
  SchemaNotFoundError,
  SchemaRegistryGateway,
  SchemaRejectedError,
  ValidationError,
} from './codec/index.js';
export { ConfigError } from './config/index.js';
export { isStrandError, StrandError, type StrandErrorCode } from './errors.js';
export { HEADERS } from './headers.js';
export type { KafkaConnection } from './kafka/client.js';
export {
  type EnqueueResult,
  type JobInput,
  JobProducer,
  type JobProducerOptions,
} from './producer/job-producer.js';
