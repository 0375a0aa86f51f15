/**
 * Tests that need a tool beyond Node, Java and Maven (Redis, chromium, prometheus) are skipped with
 * the one-line reason when it is missing, so `npm test` passes on a machine with only the demo's
 * prerequisites. In CI (`CI` set; `.ci/run` installs every tool) a missing tool fails the test
 * instead, so CI never passes by skipping.
 */
export function skipWhenMissing(ctx: { skip: (note?: string) => never }, missing: string | undefined): void {
  if (missing === undefined) return;
  if (process.env.CI) throw new Error(missing);
  ctx.skip(missing);
}
