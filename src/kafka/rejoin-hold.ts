/**
 * Holds a JoinGroup until the drain (`gate`) settled, heartbeating every `everyMs` meanwhile.
 * kafkajs heartbeats only from its fetch loop, which is waiting for this join; without heartbeats
 * the coordinator expels the member after `sessionTimeout` — a drain longer than that would have
 * its partitions given to another member while its jobs still run there. A heartbeat of the old
 * generation during a rebalance is answered REBALANCE_IN_PROGRESS, and the coordinator still renews
 * the session with it (Kafka's classic group protocol), so the member keeps its place until the
 * rebalance timeout. Shared by the kafkajs port and the simulation's model of it (test/sim).
 */
export async function holdRejoin(
  gate: Promise<void>,
  everyMs: number,
  heartbeat: () => Promise<void> | undefined,
  sleep: (ms: number) => Promise<void>,
): Promise<void> {
  let settled = false;
  const drained = gate.then(
    () => (settled = true),
    () => (settled = true),
  );
  while (!settled) {
    await Promise.race([drained, sleep(everyMs)]);
    if (settled) return;
    const beat = heartbeat()?.catch(() => undefined);
    // A heartbeat stuck on a moving coordinator must not hold the join past the drain.
    if (beat) await Promise.race([beat, drained, sleep(everyMs)]);
  }
}
