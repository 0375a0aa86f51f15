import type { RegistryOptions } from '../codec/index.js';
import type { KafkaConnection } from '../kafka/client.js';
import type { Logger } from '../observability/logger.js';
import { JobProducer } from '../producer/job-producer.js';
import type { FollowUpTarget, FollowUpTopic } from './job.js';

/**
 * The producers behind `ctx.enqueue({ topic, schema }, job)`: one `JobProducer` per topic, subject
 * and schema, on the worker's connection and registry, connected on first use and disconnected
 * when the worker closes. A producer whose connect failed is forgotten, so the next call tries again.
 */
export class FollowUpProducers {
  private readonly producers = new Map<string, Promise<JobProducer>>();
  private closed = false;

  constructor(
    private readonly connection: KafkaConnection,
    private readonly opts: { registry: unknown; tracing: boolean },
    private readonly logger: Logger,
  ) {}

  get(target: FollowUpTopic): Promise<FollowUpTarget<unknown>> {
    if (this.closed) return Promise.reject(new Error('the worker is closed: ctx.enqueue after stop'));
    const id = `${target.topic}\0${target.subject ?? ''}\0${JSON.stringify(target.schema)}`;
    let producer = this.producers.get(id);
    if (!producer) {
      const made = new JobProducer({
        kafka: this.connection,
        registry: this.opts.registry as RegistryOptions,
        topic: target.topic,
        schema: target.schema,
        ...(target.subject ? { subject: target.subject } : {}),
        logger: this.logger,
        tracing: this.opts.tracing,
      });
      producer = made.connect().then(() => made);
      producer.catch(() => this.producers.delete(id));
      this.producers.set(id, producer);
    }
    return producer as Promise<FollowUpTarget<unknown>>;
  }

  /** Disconnects every producer made. */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.producers.values()];
    this.producers.clear();
    await Promise.all(all.map((p) => p.then((made) => made.disconnect()).catch(() => undefined)));
  }
}
