/** Scenario sizes: `quick` (`--quick`, and the reduced runs inside `npm test`) and `full`. */
export const chaosSizes = {
  quick: {
    crash: {
      jobs: 4000,
      keys: 200,
      workers: 3,
      kills: 3,
      concurrency: 2,
      handlerMs: [5, 15] as [number, number],
      killEveryMs: [2000, 3000] as [number, number],
      // Inside npm test: the wait ends well before the test's timeout, so a failure shows its verdict.
      waitMs: 150_000,
    },
    failover: { jobs: 6000, rate: 300, kills: 2, downMs: 5000 },
    rebalance: { jobs: 6000, keys: 200 },
    outage: { jobs: 9000, rate: 200, outageMs: 8000 },
    soak: { minutes: 2, rate: 200, warmupMs: 30_000 },
    badInput: { valid: 2000, bad: 2000, keys: 100, rssLimitMiB: 300, waitMs: 150_000 },
    strictOrder: { jobs: 3000, keys: 100, workers: 3, kills: 3, waitMs: 150_000 },
    // Past the 200,000 records a parking read used to stop at.
    parkingTakeover: { history: 205_000, jobsPerRound: 600, keys: 30, waitMs: 120_000 },
    // Scaled down: a 15 s job against the shortest session Kafka allows by default (6 s).
    longJob: { longMs: 15_000, longJobs: 2, sessionTimeoutMs: 6000, heartbeatIntervalMs: 1000, keys: 20 },
    releaseUnderLoad: {
      parked: 1000,
      others: 5000,
      rate: 250,
      tierMs: 3000,
      maxGapMs: 5000,
      waitMs: 120_000,
    },
    outbox: {
      transactions: 1500,
      writers: 3,
      keys: 50,
      relays: 2,
      killEveryMs: [1500, 2500] as [number, number],
      restartAt: 0.4,
      workers: 2,
      waitMs: 60_000,
    },
    // The one-node stack, no leader kill: both runs (exactlyOnce on, then off) in about 80 s. The
    // input lasts 30 s and the kills are 4–6 s apart, so they land while the stages run steadily
    // (in CI the workers take seconds to start; a shorter input was mostly a backlog worked off in
    // one burst, and kills of idle members left the control run without duplicates).
    exactlyOnce: {
      jobs: 3000,
      keys: 100,
      rate: 100,
      workersPerStage: 3,
      kills: 4,
      killEveryMs: [4000, 6000] as [number, number],
      threeNodes: false,
      waitMs: 120_000,
    },
  },
  full: {
    crash: {
      jobs: 50_000,
      keys: 200,
      workers: 3,
      kills: 10,
      concurrency: 4,
      handlerMs: [5, 15] as [number, number],
    },
    failover: { jobs: 30_000, rate: 500, kills: 4, downMs: 10_000 },
    rebalance: { jobs: 30_000, keys: 200 },
    outage: { jobs: 40_000, rate: 500, outageMs: 20_000 },
    soak: { minutes: 10, rate: 300, warmupMs: 120_000 },
    badInput: { valid: 10_000, bad: 10_000, keys: 200, rssLimitMiB: 300 },
    strictOrder: { jobs: 20_000, keys: 200, workers: 3, kills: 8 },
    parkingTakeover: { history: 410_000, jobsPerRound: 2000, keys: 50 },
    // A 40 s job with the default session (30 s) and heartbeat (3 s).
    longJob: { longMs: 40_000, longJobs: 4, sessionTimeoutMs: 30_000, heartbeatIntervalMs: 3000, keys: 40 },
    releaseUnderLoad: { parked: 10_000, others: 50_000, rate: 400, tierMs: 10_000, maxGapMs: 5000 },
    outbox: {
      transactions: 50_000,
      writers: 3,
      keys: 300,
      relays: 2,
      killEveryMs: [3000, 5000] as [number, number],
      restartAt: 0.4,
      workers: 3,
    },
    exactlyOnce: {
      jobs: 30_000,
      keys: 300,
      rate: 500,
      workersPerStage: 3,
      kills: 20,
      killEveryMs: [3000, 5000] as [number, number],
      threeNodes: true,
      leaderKillAtMs: 20_000,
      leaderDownMs: 10_000,
    },
  },
};
