export {
  AvroCodec,
  DecodeError,
  type DecodeReason,
  loadAvroSchemaFile,
  RegistryAccessError,
  RegistryUnavailableError,
  SchemaNotFoundError,
  SchemaRegistryGateway,
  SchemaRejectedError,
  ValidationError,
} from './codec/index.js';
export { ConfigError } from './config/index.js';
export { isStrandError, StrandError, type StrandErrorCode } from './errors.js';
export {
  type DeadJob,
  deadErrorClasses,
  type ListedDeadJob,
  listDeadJobs,
  type ReplayOptions,
  type ReplayResult,
  ReplayStoppedError,
  replayDeadJobs,
} from './failure/dlq.js';
export { type FailureKind, JobTimeoutError, NonRetriableError, RetryLaterError } from './failure/errors.js';
export { HEADERS } from './headers.js';
export { MemoryIdempotencyStore } from './idempotency/memory-store.js';
export { RedisIdempotencyStore, type RedisStoreOptions } from './idempotency/redis-store.js';
export { type BeginResult, type IdempotencyStore, StoreUnavailableError } from './idempotency/store.js';
export type { KafkaConnection } from './kafka/client.js';
export { createJobTopics, type JobTopicsSpec, type TopicOutcome } from './kafka/topics.js';
export { computeLag, DesiredReplicas, dlqDepth, type PartitionLag } from './lag/lag.js';
export {
  DEFAULT_OUTBOX_TABLE,
  migrateOutbox,
  OUTBOX_ID_HEADER,
  OUTBOX_SHARDS,
  Outbox,
  type OutboxBacklog,
  type OutboxEntry,
  type OutboxJob,
  type OutboxOptions,
  OutboxRelay,
  type OutboxRelayOptions,
  outboxBacklog,
  type Queryable,
} from './outbox/index.js';
export {
  type EnqueueResult,
  type JobInput,
  JobProducer,
  type JobProducerOptions,
} from './producer/job-producer.js';
export type { LimitStore } from './worker/fairness/limit-store.js';
export type { LimitsOptions, Rate, RateString } from './worker/fairness/options.js';
export { RedisLimitStore, type RedisLimitStoreOptions } from './worker/fairness/redis-limit-store.js';
export type { OrderingMode } from './worker/key-scheduler.js';
export {
  type BatchContext,
  type BatchFailure,
  type BatchHandler,
  type BatchResult,
  defineWorker,
  type FollowUp,
  type FollowUpOptions,
  type FollowUpTarget,
  type FollowUpTopic,
  type Job,
  type JobContext,
  type JobHandler,
  type WorkerDefinition,
  type WorkerOptions,
} from './worker/options.js';
export { Worker, type WorkerEvents } from './worker/worker.js';
