/**
 * The ledger worker (ledger-worker.ts) with an OpenTelemetry SDK registered that appends every span
 * to the file named by the `traceFile` setting: `strand worker test/support/traced-worker.ts`.
 */
import { FileSpanExporter, registerTracing } from './otel.js';

const { traceFile } = JSON.parse(process.env.STRAND_TEST_WORKER ?? '{}') as { traceFile?: string };
if (traceFile) registerTracing(new FileSpanExporter(traceFile));

export { default } from './ledger-worker.js';
