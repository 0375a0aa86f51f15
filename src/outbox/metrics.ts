import client from 'prom-client';

/** The relay's metrics (docs/metrics.md, "Transactional outbox"). */
export class OutboxMetrics {
  readonly registry: client.Registry;
  readonly pending: client.Gauge<'table' | 'topic'>;
  readonly oldestAge: client.Gauge<'table' | 'topic'>;
  readonly published: client.Counter<'table' | 'topic'>;
  readonly deadLettered: client.Counter<'table' | 'topic'>;
  readonly shards: client.Gauge<'table'>;
  readonly publishLatency: client.Histogram<'table'>;

  constructor(opts: { registry?: client.Registry; defaultMetrics?: boolean } = {}) {
    this.registry = opts.registry ?? new client.Registry();
    const registers = [this.registry];
    if (opts.defaultMetrics !== false) client.collectDefaultMetrics({ register: this.registry });
    this.pending = new client.Gauge({
      name: 'queue_outbox_pending',
      help: 'Outbox rows committed and not yet published to Kafka',
      labelNames: ['table', 'topic'],
      registers,
    });
    this.oldestAge = new client.Gauge({
      name: 'queue_outbox_oldest_age_seconds',
      help: 'Age of the oldest outbox row not yet published (0 when none)',
      labelNames: ['table', 'topic'],
      registers,
    });
    this.published = new client.Counter({
      name: 'queue_outbox_published_total',
      help: 'Outbox rows published to Kafka and acknowledged (acks=all)',
      labelNames: ['table', 'topic'],
      registers,
    });
    this.deadLettered = new client.Counter({
      name: 'queue_outbox_dead_lettered_total',
      help: 'Outbox rows sent to the DLQ (their schema rejected by the registry)',
      labelNames: ['table', 'topic'],
      registers,
    });
    this.shards = new client.Gauge({
      name: 'queue_outbox_relay_shards',
      help: `Key shards this relay holds (publishes); 0 on a standby`,
      labelNames: ['table'],
      registers,
    });
    this.publishLatency = new client.Histogram({
      name: 'queue_outbox_publish_latency_seconds',
      help: 'Row written (enqueued_at) to Kafka acknowledgement',
      labelNames: ['table'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
  }
}
