export { Outbox, type OutboxEntry, type OutboxJob, type OutboxOptions } from './outbox.js';
export { type OutboxBacklog, outboxBacklog } from './pg.js';
export { OUTBOX_ID_HEADER } from './publish.js';
export { OutboxRelay, type OutboxRelayOptions } from './relay.js';
export {
  DEFAULT_OUTBOX_TABLE,
  migrateOutbox,
  OUTBOX_SHARDS,
  type Queryable,
} from './table.js';
