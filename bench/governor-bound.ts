/**
 * How much a clock that changes over time could save on the governor evaluation's replay, with
 * foresight — a bound on what any governor could get there, against the best static clock:
 *
 *   npm run bench -- governor-bound [--floor-mhz 1005] [--bin-s 10] [--slack-pts 1] [--nodes-per-pool 2] [--period-s 5] [--max-step-mhz 400]
 *
 * Library mode (the simulated node as a function, no wall clock), the evaluation's defaults: Azure
 * 2023 conversation and code, an hour at 12× with 2/12 of rows kept, Llama-2-70B TP8 per node, SLO
 * TTFT 2 s / TPOT 100 ms, requests dealt to a pool's nodes i mod n. Per pool and node, three ways:
 * the maximum clock; the best static clock (static-replay.ts: the cheapest within `slack` points of
 * the maximum's attainment); and a schedule chosen bin by bin (`--bin-s` of replay time) knowing the
 * arrivals: for each bin in turn, the lowest clock (binary search over the candidates) that keeps
 * that bin's requests within the maximum's misses plus `slack` of them, with every later bin at the
 * maximum while it is judged. The schedule's figures are from one last run with it, as it is. And,
 * without foresight, the simplest fast reaction there is: every `--reactive-period-ms` of replay time,
 * the maximum when more than `--reactive-high` requests are in flight on the node, the floor when
 * `--reactive-low` or fewer are, else the clock stays. And the governor itself (governed-replay.ts:
 * its policy and burst guard, fed the tap's events from the simulated node, `--period-s` of replay
 * time per control period, the guard looking every 100 ms, on the lab profile's prior without
 * measured energy), with and without the burst guard.
 * Last line: one JSON object.
 */
import { parseArgs } from "node:util";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { H100_SUPPORTED_SM_CLOCKS_MHZ, type WorkloadRequest } from "../services/simnode/mod.ts";
import { chooseStaticByReplay, poolWorkloads, replayNode, replayUntilMs } from "../services/lab/governor-eval/static-replay.ts";
import { DEFAULT_POLICY } from "../services/governor/mod.ts";
import { replayGoverned, replaySteered, type GovernedReplayOptions } from "../services/lab/governor-eval/governed-replay.ts";
import { labProfile } from "../services/lab/governor-eval/evaluate.ts";

const { values: flags } = parseArgs({
  options: {
    "floor-mhz": { type: "string", default: String(DEFAULT_POLICY.floorMhz) },
    "bin-s": { type: "string", default: "10" },
    "slack-pts": { type: "string", default: "1" },
    "nodes-per-pool": { type: "string", default: "2" },
    "reactive-period-ms": { type: "string", default: "1000" },
    "reactive-high": { type: "string", default: "2" },
    "reactive-low": { type: "string", default: "0" },
    "period-s": { type: "string", default: "5" },
    attainment: { type: "string", default: "0.97" },
    "min-samples": { type: "string", default: "10" },
    "max-step-mhz": { type: "string", default: String(DEFAULT_POLICY.maxStepDownMhz) },
  },
});
const reactive = { periodMs: Number(flags["reactive-period-ms"]), high: Number(flags["reactive-high"]), low: Number(flags["reactive-low"]) };
const floor = Number(flags["floor-mhz"]);
const binMs = Number(flags["bin-s"]) * 1000;
const slack = Number(flags["slack-pts"]) / 100;
const nodes = Number(flags["nodes-per-pool"]);
const model = "llama-2-70b";
const gpus = 8;
const speedup = 12;
const windowMs = 3600_000;
const sample = 2 / 12;
const seed = 1;
const tailMs = 20_000;
const slo = { ttftSloMs: 2000, tpotSloMs: 100 };
const untilMs = replayUntilMs({ windowMs, speedup, tailMs });
const clocks = [...new Set(H100_SUPPORTED_SM_CLOCKS_MHZ.filter((f) => f >= floor))].sort((a, b) => a - b);
const maxMhz = clocks.at(-1)!;
const log = (l: string) => process.stderr.write(`governor-bound: ${l}\n`);

type Schedule = { atMs: number; smClockMhz: number }[];
const sim = { model, gpus, speedup, windowMs, tailMs, slo };
const run = (w: readonly WorkloadRequest[], schedule: Schedule) => replayNode(w, maxMhz, sim, schedule);

/** The reactive rule, stepped with the node: it sees only what has happened (requests in flight). */
function runReactive(w: readonly WorkloadRequest[]) {
  const r = replaySteered(w, { ...sim, startMhz: maxMhz, everyMs: reactive.periodMs }, {
    control(_nowMs, node, clock) {
      const inFlight = node.instances.reduce((a, i) => a + i.engine.running + i.engine.waiting, 0);
      return inFlight > reactive.high ? maxMhz : inFlight <= reactive.low ? clocks[0]! : clock;
    },
  });
  return { energyKwh: r.energyKwh, missed: r.missed.size, meanMhz: r.meanClockMhz };
}

const profile = await labProfile({ model, gpus, seed, out: join(tmpdir(), "joulestream-governor-bound") }, log);
const governed = (guard: boolean): GovernedReplayOptions => ({
  ...sim, maxMhz, supportedMhz: H100_SUPPORTED_SM_CLOCKS_MHZ, periodMs: Number(flags["period-s"]) * 1000, profile, guard: guard ? {} : false,
  policy: { floorMhz: floor, minSamples: Number(flags["min-samples"]), attainmentTarget: Number(flags.attainment), maxStepDownMhz: Number(flags["max-step-mhz"]) },
});
const out: Record<string, unknown> = { bench: "governor-bound", floorMhz: floor, binS: binMs / 1000, slackPts: slack * 100 };
const totals = { max: 0, static: 0, dynamic: 0, reactive: 0, governor: 0, governorNoGuard: 0 };
const pools: Record<string, unknown>[] = [];
for (const pool of ["conv", "code"] as const) {
  const trace = `load/traces/azure/AzureLLMInferenceTrace_${pool}.csv`;
  const per = await poolWorkloads({ trace, model, nodes, speedup, windowMs, sample, seed });
  const st = chooseStaticByReplay(per, { ...sim, minMhz: floor, slackPts: slack * 100 });
  const stRow = st.rows.find((x) => x.mhz === st.mhz)!;
  let maxE = 0, dynE = 0, n = 0, maxMiss = 0, dynMiss = 0, reE = 0, reMiss = 0, reMhz = 0;
  const gov = { on: { e: 0, miss: 0, boosts: 0, base: 0 }, off: { e: 0, miss: 0, boosts: 0, base: 0 } };
  const clockMs = new Map<number, number>();
  for (const [k, w] of per.entries()) {
    const bins = Math.ceil(untilMs / binMs);
    const binOf = new Map(w.map((q) => [q.id!, Math.floor(q.arrivalMs / binMs)]));
    const inBin = (b: number, ids: Set<string>) => [...ids].filter((id) => binOf.get(id) === b).length;
    const atMax = run(w, []);
    const schedule: Schedule = [];
    for (let b = 0; b < bins; b++) {
      const count = w.filter((q) => binOf.get(q.id!) === b).length;
      const allowed = inBin(b, atMax.missed) + Math.floor(slack * count);
      // The lowest clock for this bin whose misses stay within what is allowed (misses fall as the clock rises).
      let lo = 0, hi = clocks.length - 1;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        const trial = run(w, [...schedule, { atMs: b * binMs, smClockMhz: clocks[mid]! }, { atMs: (b + 1) * binMs, smClockMhz: maxMhz }]);
        if (inBin(b, trial.missed) <= allowed) hi = mid;
        else lo = mid + 1;
      }
      schedule.push({ atMs: b * binMs, smClockMhz: clocks[lo]! });
      clockMs.set(clocks[lo]!, (clockMs.get(clocks[lo]!) ?? 0) + binMs);
    }
    const dyn = run(w, schedule);
    const re = runReactive(w);
    for (const [k2, on] of [["on", true], ["off", false]] as const) {
      const g = replayGoverned(w, governed(on));
      gov[k2].e += g.energyKwh;
      gov[k2].miss += g.missed.size;
      gov[k2].boosts += g.boosts;
      gov[k2].base += g.meanBaseMhz / per.length;
    }
    reE += re.energyKwh;
    reMiss += re.missed;
    reMhz += re.meanMhz / per.length;
    maxE += atMax.energyKwh;
    dynE += dyn.energyKwh;
    n += w.length;
    maxMiss += atMax.missed.size;
    dynMiss += dyn.missed.size;
    log(`${pool} node ${k}: schedule ${schedule.map((s) => s.smClockMhz).join(" ")}`);
  }
  const row = {
    pool, requests: n,
    max: { kwh: +maxE.toFixed(4), attainmentPct: +(100 * (1 - maxMiss / n)).toFixed(2) },
    static: { mhz: st.mhz, kwh: +stRow.energyKwh.toFixed(4), attainmentPct: +(100 * stRow.attainment).toFixed(2) },
    dynamic: { kwh: +dynE.toFixed(4), attainmentPct: +(100 * (1 - dynMiss / n)).toFixed(2), meanMhz: Math.round([...clockMs].reduce((a, [f, ms]) => a + f * ms, 0) / [...clockMs.values()].reduce((a, b) => a + b, 0)) },
    reactive: { kwh: +reE.toFixed(4), attainmentPct: +(100 * (1 - reMiss / n)).toFixed(2), meanMhz: Math.round(reMhz) },
    governor: { kwh: +gov.on.e.toFixed(4), attainmentPct: +(100 * (1 - gov.on.miss / n)).toFixed(2), meanBaseMhz: Math.round(gov.on.base), boosts: gov.on.boosts },
    governorNoGuard: { kwh: +gov.off.e.toFixed(4), attainmentPct: +(100 * (1 - gov.off.miss / n)).toFixed(2), meanBaseMhz: Math.round(gov.off.base) },
  };
  totals.governor += gov.on.e;
  totals.governorNoGuard += gov.off.e;
  totals.reactive += reE;
  totals.max += maxE;
  totals.static += stRow.energyKwh;
  totals.dynamic += dynE;
  pools.push(row);
  log(`${pool}: max ${row.max.kwh} kWh (${row.max.attainmentPct}%), static ${st.mhz} MHz ${row.static.kwh} kWh (${row.static.attainmentPct}%), schedule with foresight ${row.dynamic.kwh} kWh (${row.dynamic.attainmentPct}%, mean ${row.dynamic.meanMhz} MHz), reactive ${row.reactive.kwh} kWh (${row.reactive.attainmentPct}%, mean ${row.reactive.meanMhz} MHz), governor ${row.governor.kwh} kWh (${row.governor.attainmentPct}%, ${row.governor.boosts} boosts), without its burst guard ${row.governorNoGuard.kwh} kWh (${row.governorNoGuard.attainmentPct}%)`);
}
out.pools = pools;
out.reactive = reactive;
out.governorPolicy = { periodS: Number(flags["period-s"]), maxStepMhz: Number(flags["max-step-mhz"]), attainment: Number(flags.attainment), minSamples: Number(flags["min-samples"]) };
out.kwh = Object.fromEntries(Object.entries(totals).map(([k, v]) => [k, +v.toFixed(4)]));
out.savingVsMaxPct = Object.fromEntries(Object.entries(totals).filter(([k]) => k !== "max").map(([k, v]) => [k, +(100 * (1 - v / totals.max)).toFixed(1)]));
out.governorVsStaticPct = +(100 * (1 - totals.governor / totals.static)).toFixed(1);
out.dynamicVsStaticPct = +(100 * (1 - totals.dynamic / totals.static)).toFixed(1);
process.stdout.write(`${JSON.stringify(out)}\n`);
