import test from "ava";
import { connect } from "@nats-io/transport-node";
import { startFleet } from "../services/fleet/emulator.ts";
import { readResults, startStackAnalyzer } from "./helpers/analyzer-harness.ts";
import { withStack } from "./helpers/stack.ts";

/**
 * Regression: an analyzer that starts on a backlog (a restart after downtime, a new replica, a
 * replay) reads POWER, WORK and REQUESTS through three consumers that progress at different speeds.
 * When the join's per-node watermark was the latest window end seen on ANY of them, the POWER
 * consumer ran ahead and closed windows before their WORK arrived (10 nodes × 60 s: 550 of 600
 * windows incomplete, Σ request energy 157 kJ of 1,755 kJ). The watermark is now the least of how
 * far POWER and each instance's WORK have come.
 */
test("fleet backlog - an analyzer started on a backlog joins it as completely as one that kept up", async (t) => {
  t.timeout(90_000);
  const stack = await withStack(t);
  const nc = await connect({ servers: stack.natsUrl });
  t.teardown(() => nc.close());
  const fleet = startFleet({ nc, nodes: 6, durationS: 30, seed: 2 });
  const report = await fleet.done();

  const h = await startStackAnalyzer(stack); // default lateness (5 s), as deployed
  t.teardown(() => h.close());
  t.true(await h.analyzer.idle(60_000));
  const stored = await readResults(h.influx);
  const storedRequestJ = stored.requests.reduce((s, r) => s + r.energyJ, 0);
  t.log(`incomplete windows ${stored.incompleteWindows}/${stored.nodeWindows}, late ${h.analyzer.stats().join.late}, Σ request energy ${storedRequestJ.toFixed(0)} J of ${report.truth.attributedJ.toFixed(0)} J`);
  t.is(stored.incompleteWindows, 0);
  t.true(Math.abs(storedRequestJ - report.truth.attributedJ) <= 1e-6 * report.truth.attributedJ);
});
