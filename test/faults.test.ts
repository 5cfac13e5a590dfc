import test from "ava";
import { runScenario } from "../faults/scenario-run.ts";
import { SCALES, SCENARIOS } from "../faults/scenarios.ts";
import { formatResult } from "../faults/run.ts";
import { conservation, verdict, type Observation, type StoredRun } from "../faults/verdict.ts";

/**
 * The fault suite of issue 19 (faults/), every scenario at the short scale: a few seconds of
 * load, the fault mid-run, and what the analyzer stored compared with an unfaulted analysis of
 * the same recorded streams. `npm run faults` runs them at the durations.
 */

const run = (ids: string[], energy: (id: string) => number = () => 10, joined = true): StoredRun => ({
  requests: new Map(ids.map((id) => [id, { energyJ: energy(id), joined }])),
  windows: [0, 1000, 2000, 3000].map((startMs, k) => ({ startMs, measuredJ: 100, attributedJ: k === 0 ? ids.length * 10 : 0, idleJ: k === 0 ? 100 - ids.length * 10 : 100, incomplete: false })),
});

const ids = ["r-0", "r-1", "r-2"];
const clean: Observation = {
  loadResults: ids,
  faulted: run(ids),
  reference: run(ids),
  unpublished: { agent: 0, load: 0 },
  crashes: [],
  streams: [{ name: "POWER", replicas: 3 }],
  expectedReplicas: 3,
};
const failing = (o: Observation) => verdict(o).filter((r) => !r.ok).map((r) => r.check);

test("faults verdict - an identical run passes every check", (t) => {
  t.deepEqual(failing(clean), []);
});

test("faults verdict - a lost request, a lost LOAD join, energy off by 3 %, a crash and an R1 bucket each fail", (t) => {
  t.deepEqual(failing({ ...clean, faulted: run(["r-0", "r-1"]) }), ["requests stored", "LOAD joins"]);
  t.deepEqual(failing({ ...clean, faulted: run(ids, () => 10, false) }), ["LOAD joins"]);
  t.deepEqual(failing({ ...clean, faulted: { ...run(ids), requests: run(ids, (id) => (id === "r-1" ? 10.3 : 10)).requests } }), ["energy per request vs reference", "conservation error"]);
  t.deepEqual(failing({ ...clean, crashes: ["nats-n2 (signal SIGSEGV)"] }), ["processes crashed"]);
  t.deepEqual(failing({ ...clean, streams: [{ name: "KV_x", replicas: 1 }] }), ["streams and buckets R3"]);
  t.deepEqual(failing({ ...clean, unpublished: { agent: 0, load: 2 } }), ["unpublished (agent, loadgen)"]);
  const lostPower = run(ids);
  lostPower.windows.splice(2, 1); // a window the agent never got into JetStream: missing in the reference too
  t.deepEqual(failing({ ...clean, faulted: lostPower, reference: lostPower }), ["node windows, measured energy"]);
  const incomplete = run(ids);
  incomplete.windows[2]!.incomplete = true;
  t.deepEqual(failing({ ...clean, faulted: incomplete, reference: incomplete }), ["node windows, measured energy"]);
  t.deepEqual(failing({ ...clean, deadLetters: { sent: 10, deadLettered: 9 } }), ["hostile messages dead-lettered"]);
});

test("faults verdict - conservation holds per window and over the run", (t) => {
  t.is(conservation(run(ids)), 0);
  t.true(conservation({ ...run(ids), windows: [{ startMs: 0, measuredJ: 100, attributedJ: 30, idleJ: 69, incomplete: false }] }) > 1e-3);
});

for (const sc of SCENARIOS) {
  test.serial(`faults - ${sc.name}: ${sc.what}, nothing lost`, async (t) => {
    t.timeout(150_000);
    const lines: string[] = [];
    // Each line logged as it comes: a scenario that hangs shows how far it got.
    const r = await runScenario(sc, SCALES.short, (l) => (lines.push(l), t.log(l)));
    t.log(formatResult(r));
    const bad = r.rows.filter((x) => !x.ok);
    if (bad.length) t.log(lines.slice(-30).join("\n"));
    t.deepEqual(bad, []);
  });
}
