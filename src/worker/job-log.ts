import type { Logger } from '../observability/logger.js';
import type { WorkItem } from './work-item.js';

/**
 * A job's logger, made on first use: most jobs never log, and a pino child per job (or a Proxy)
 * is a measurable cost at tens of thousands of jobs per second.
 */
export class JobLog {
  private made: Logger | undefined;

  constructor(
    private readonly base: Logger,
    private readonly item: WorkItem,
    private readonly attempt: number = item.attempt,
  ) {}

  get logger(): Logger {
    const { item } = this;
    this.made ??= this.base.child({
      topic: item.topic,
      partition: item.partition,
      offset: item.offset,
      key: item.key,
      jobId: item.jobId,
      attempt: this.attempt,
    });
    return this.made;
  }

  /** The logger of a later in-place attempt of the same job. */
  forAttempt(attempt: number): JobLog {
    return new JobLog(this.base, this.item, attempt);
  }
}
