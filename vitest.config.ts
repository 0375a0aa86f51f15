import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    // Two cores, and the broker and registry need one of them: keep test files to two at a time.
    pool: 'forks',
    maxWorkers: 2,
    // Above the longest test's own budget (the scaling test's waits add up to 260 s); waitUntil
    // gives up 5 s before a test's timeout, so a failing test ends with its own verdict.
    testTimeout: 300_000,
    hookTimeout: 300_000,
    // The global teardown deletes what crashed test files left, waiting for killed workers' sessions.
    teardownTimeout: 120_000,
    reporters: process.env.CI ? ['default', 'json'] : ['default'],
    outputFile: { json: '.strand/test-results.json' },
    projects: [
      {
        // No broker, no containers: `npm run test:unit` (vitest run --project unit) starts nothing.
        extends: true,
        test: { name: 'unit', include: ['test/unit/**/*.test.ts', 'test/sim/**/*.test.ts'] },
      },
      {
        // A real Kafka and schema registry from the global setup (env, containers or the devstack).
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          globalSetup: ['test/support/global-setup.ts'],
          // Deletes what each file made (topics, groups, subjects, status records) after it.
          setupFiles: ['test/support/cleanup-after-file.ts'],
        },
      },
    ],
  },
});
