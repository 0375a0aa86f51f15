import { readFileSync } from 'node:fs';
import { type Admin, Kafka, type KafkaConfig, logLevel, type SASLOptions } from 'kafkajs';
import { StrandError, tlsProblem } from '../errors.js';

export type { Admin, Consumer, EachBatchPayload, IHeaders, KafkaMessage, Message, Producer } from 'kafkajs';
export { Partitioners } from 'kafkajs';

/** How to reach a Kafka cluster. */
export interface KafkaConnection {
  /** Bootstrap brokers, `host:port`. */
  brokers: string[];
  /** Client id sent to the broker (shows in broker logs and quotas). @defaultValue `'strand'` */
  clientId?: string;
  /** TLS: `true` for the system CAs, or explicit CA/cert/key PEMs. */
  tls?: boolean | { ca?: string; cert?: string; key?: string; rejectUnauthorized?: boolean };
  /** SASL credentials. The password is never logged. */
  sasl?: { mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512'; username: string; password: string };
  /** Socket connection timeout. @defaultValue 3000 */
  connectionTimeoutMs?: number;
  /** Request timeout. @defaultValue 30000 */
  requestTimeoutMs?: number;
  /** Retries of a failed request or connection (kafkajs backoff). @defaultValue 8 */
  retries?: number;
}

const LEVELS: Record<number, string> = {
  [logLevel.ERROR]: 'error',
  [logLevel.WARN]: 'warn',
  [logLevel.INFO]: 'info',
  [logLevel.DEBUG]: 'debug',
};

/** Where kafkajs log lines go; by default warnings and errors are kept, routed to the caller. */
export type KafkaLogSink = (
  level: 'error' | 'warn' | 'info' | 'debug',
  message: string,
  extra: object,
) => void;

/** Builds a kafkajs client. The only place that decides how kafkajs is configured. */
export function createKafka(conn: KafkaConnection, sink?: KafkaLogSink): Kafka {
  const config: KafkaConfig = {
    clientId: conn.clientId ?? 'strand',
    brokers: conn.brokers,
    connectionTimeout: conn.connectionTimeoutMs ?? 3000,
    requestTimeout: conn.requestTimeoutMs ?? 30_000,
    logLevel: sink ? logLevel.WARN : logLevel.NOTHING,
    retry: { retries: conn.retries ?? 8, initialRetryTime: 200, maxRetryTime: 5_000 },
  };
  if (sink) {
    config.logCreator =
      () =>
      ({ level, log }) => {
        const { message, ...extra } = log;
        sink((LEVELS[level] ?? 'info') as 'error', String(message), extra);
      };
  }
  if (conn.tls) {
    config.ssl = conn.tls === true ? true : { ...conn.tls };
  }
  if (conn.sasl) {
    config.sasl = { ...conn.sasl } as SASLOptions;
  }
  const kafka = new Kafka(config);
  const admin = kafka.admin.bind(kafka);
  kafka.admin = (opts) => retryingTransientReads(admin(opts));
  return kafka;
}

/** Answers of a partition or group between leaders or coordinators, or not ready yet. */
const MOVING = new Set([
  'NOT_LEADER_FOR_PARTITION',
  'NOT_LEADER_OR_FOLLOWER',
  'LEADER_NOT_AVAILABLE',
  'OFFSET_NOT_AVAILABLE',
  'REPLICA_NOT_AVAILABLE',
  'COORDINATOR_NOT_AVAILABLE',
  'COORDINATOR_LOAD_IN_PROGRESS',
  'NOT_COORDINATOR',
]);

/** A broker that cannot be reached now: another one, or fresh metadata, may answer. */
const UNREACHABLE = new Set([
  'KafkaJSConnectionError',
  'KafkaJSConnectionClosedError',
  'KafkaJSBrokerNotFound',
]);

function transient(error: unknown): boolean {
  for (
    let e = error as { name?: string; type?: string; cause?: unknown } | undefined;
    e;
    e = e.cause as typeof e
  ) {
    if ((e.type && MOVING.has(e.type)) || (e.name && UNREACHABLE.has(e.name))) return true;
  }
  return false;
}

/** The admin calls that only read, and so may be repeated. */
const READS = [
  'listTopics',
  'fetchTopicMetadata',
  'fetchTopicOffsets',
  'fetchTopicOffsetsByTimestamp',
  'fetchOffsets',
  'describeCluster',
  'describeConfigs',
  'describeGroups',
  'listGroups',
] as const;

/**
 * kafkajs' admin gives up on the first "not the leader" answer to a ListOffsets request (its
 * retrier retries only an unknown topic), which a broker gives for a moment after a topic was
 * created or while a leader moves; and a metadata read fails at once when the broker it picked at
 * random is down, though others are up (its broker pool connects outside its own try). Strand's
 * reads through the admin (topic checks at start, lag, DLQ depth, replay, the console) retry those
 * answers for up to about 11 s, with backoff, instead.
 */
export function retryingTransientReads(admin: Admin): Admin {
  const target = admin as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  for (const name of READS) {
    const call = target[name]?.bind(admin);
    if (!call) continue;
    target[name] = async (...args: unknown[]) => {
      for (let attempt = 0; ; attempt++) {
        try {
          return await call(...args);
        } catch (error) {
          if (attempt >= 9 || !transient(error)) throw error;
          await new Promise((r) => setTimeout(r, Math.min(2_000, 100 * 2 ** attempt)));
        }
      }
    };
  }
  return admin;
}

/**
 * Turns kafkajs' SASL and TLS verification failures into one line naming the user, mechanism and
 * brokers (never the password); other errors pass through. Bad credentials are not retried: kafkajs gives up on the
 * first authentication failure, and so does Strand.
 */
export function explainConnectError(
  error: unknown,
  conn: Pick<KafkaConnection, 'brokers' | 'sasl'>,
): unknown {
  const at = conn.brokers.length > 0 ? ` at ${conn.brokers.join(',')}` : '';
  const tls = tlsProblem(error);
  if (tls) {
    return new StrandError(
      'KAFKA',
      `TLS to Kafka${at} failed: ${tls}; trust the brokers' CA with kafka.tls.ca (STRAND_TLS_CA_FILE)`,
      { cause: error },
    );
  }
  if ((error as Error | undefined)?.name !== 'KafkaJSSASLAuthenticationError') return error;
  const who = conn.sasl ? `user "${conn.sasl.username}" (${conn.sasl.mechanism})` : 'this client';
  return new StrandError(
    'KAFKA',
    `Kafka rejected the SASL credentials of ${who}${at}: authentication failed; check the username and password`,
    { cause: error },
  );
}

/**
 * Reads the connection settings shared by every CLI command and the test harness from the
 * environment (`STRAND_BROKERS`, `STRAND_SASL_*`, `STRAND_TLS`, `STRAND_TLS_CA_FILE`).
 */
export function connectionFromEnv(
  env: NodeJS.ProcessEnv = process.env,
  fallbackBrokers?: string[],
): KafkaConnection {
  const brokers = (env.STRAND_BROKERS ?? '')
    .split(',')
    .map((b) => b.trim())
    .filter(Boolean);
  const conn: KafkaConnection = {
    brokers: brokers.length > 0 ? brokers : (fallbackBrokers ?? ['127.0.0.1:9092']),
  };
  if (env.STRAND_TLS === '1' || env.STRAND_TLS === 'true' || env.STRAND_TLS_CA_FILE) {
    conn.tls = env.STRAND_TLS_CA_FILE ? { ca: readFileSync(env.STRAND_TLS_CA_FILE, 'utf8') } : true;
  }
  const mechanism = env.STRAND_SASL_MECHANISM?.toLowerCase();
  if (mechanism) {
    if (mechanism !== 'plain' && mechanism !== 'scram-sha-256' && mechanism !== 'scram-sha-512') {
      throw new Error(
        `STRAND_SASL_MECHANISM: expected plain, scram-sha-256 or scram-sha-512, got "${mechanism}"`,
      );
    }
    conn.sasl = {
      mechanism,
      username: env.STRAND_SASL_USERNAME ?? '',
      password: env.STRAND_SASL_PASSWORD ?? '',
    };
  }
  return conn;
}
