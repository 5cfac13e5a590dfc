import test from "ava";
import { simulate, poissonClassWorkload } from "../services/simnode/mod.ts";
import { gpuWindowEnergy } from "../shared/energy/mod.ts";
import { observe } from "../bench/helpers/observed-node.ts";
import { accuracy, runJoin } from "../bench/helpers/accuracy.ts";

// The attribution benchmark's library path: what it feeds the join must be what an agent would
// publish, and its error figures must come from comparing with the ledger (not from the join itself).
const run = () => {
  const w = poissonClassWorkload({ ratePerS: 3, durationS: 20, cls: "medium-medium", seed: 3 });
  const sim = simulate(w, { model: "llama-3-8b", gpus: 2, tp: 1, ledger: true, recordTokenTimes: true, sampleIntervalMs: 100 });
  return { sim, obs: observe(sim, { node: "n0" }) };
};

test("attribution bench - the observed node publishes each request's prompt once as prefill and its other tokens as decode, and POWER windows hold every counter joule", (t) => {
  const { sim, obs } = run();
  const tokens = new Map<string, { p: number; d: number }>();
  for (const w of obs.work)
    for (const r of w.requests) {
      const e = tokens.get(r.requestId) ?? { p: 0, d: 0 };
      e.p += r.prefillTokens;
      e.d += r.decodeTokens;
      tokens.set(r.requestId, e);
    }
  for (const q of sim.requests) t.deepEqual(tokens.get(q.id), { p: q.promptTokens, d: q.outputTokens - 1 });
  const windowsMj = obs.power.reduce((s, p) => s + p.gpus.reduce((a, g) => a + gpuWindowEnergy(g).energyMj, 0), 0);
  const counterMj = sim.samples.energyMj.reduce((s, col) => s + col.at(-1)!, 0);
  t.true(Math.abs(windowsMj - counterMj) <= 1e-9 * counterMj);
  t.is(obs.events.filter((e) => e.event === "end").length, sim.requests.length);
});

test("attribution bench - errors are measured against the ledger: a perfect estimate scores 0, the join's own rule does not, and conservation holds", (t) => {
  const { sim, obs } = run();
  const joined = runJoin(obs, { prefillWeight: 0.1 });
  const truth = new Map(sim.ledger!.requests.map((r) => [r.requestId, r.totalMj]));
  const perfect = accuracy(joined, sim.ledger!, (r) => truth.get(r.requestId)!);
  t.is(perfect.matched, sim.requests.length);
  t.is(perfect.p99Pct, 0);
  const real = accuracy(joined, sim.ledger!);
  t.true(real.medianPct > 0);
  t.true(real.conservation <= 1e-6);
  t.true(Math.abs(joined.attributedMj + joined.idleMj - joined.measuredMj) <= 1e-6 * joined.measuredMj);
});
