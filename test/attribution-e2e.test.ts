import test from "ava";
import { connectNats, influxQuery, type LoadResult } from "../shared/mod.ts";
import { createInfluxSink, detectInfluxApi, startAnalyzer } from "../services/analyzer/mod.ts";
import { runLoad, type WorkloadRequest } from "../services/loadgen/mod.ts";
import { simulate, startSimnode, type LedgerSnapshot } from "../services/simnode/mod.ts";
import { calibrateSimulated } from "../services/lab/mod.ts";
import { observe } from "../bench/helpers/observed-node.ts";
import { accuracy, runJoin } from "../bench/helpers/accuracy.ts";
import { withStack } from "./helpers/stack.ts";
import { startAgentOnSim } from "./helpers/sim-agent.ts";

/**
 * Per-request energy through real processes — nats-server, influxd, a simulated node served over
 * HTTP in real time, the agent's tap and sampler, the analyzer — against the node's own ledger
 * (GET /admin/ledger), and against the bench's library path on the same workload.
 *
 * Independent checks: the ledger (the engine's per-step accounting, which no part of the pipeline
 * reads) and the client's token counts. The rest (conservation, static + active = total) are the
 * pipeline's own invariants, checked end to end through InfluxDB.
 */
const MODEL = "llama-3.1-70b";
const TP = 4;
/** A burst of long prompts that queue behind each other (prefill over several windows before their first token), then a trickle. */
function workload(): WorkloadRequest[] {
  const out: WorkloadRequest[] = [];
  for (let k = 0; k < 8; k++) out.push({ index: k, offsetMs: 10 * k, promptTokens: 3000 + 500 * k, outputTokens: 24 + 8 * k });
  for (let k = 8; k < 16; k++) out.push({ index: k, offsetMs: 2500 + 400 * (k - 8), promptTokens: 300 + 150 * (k - 8), outputTokens: 40 + 10 * (k - 8) });
  return out;
}

test("attribution end to end - stored per-request energy against the simulated node's ledger: every request found, conserved, static and active parts adding up, median error within 20 %", async (t) => {
  t.timeout(180_000);
  const cal = calibrateSimulated({ model: MODEL, tp: TP });
  const stack = await withStack(t);
  const sim = await startSimnode({ gpus: TP, tp: TP, model: MODEL, seed: 3 });
  t.teardown(() => sim.stop());
  const node = "e2e-ledger";
  const ncAgent = await connectNats({ nats: stack.natsUrl }, "e2e-agent");
  t.teardown(() => ncAgent.close());
  const agent = await startAgentOnSim(ncAgent, sim, node, { prefillTokensPerS: cal.prefillTokensPerS });
  t.teardown(() => agent.stop());
  const ncAnalyzer = await connectNats({ nats: stack.natsUrl }, "e2e-analyzer");
  t.teardown(() => ncAnalyzer.close());
  const api = await detectInfluxApi(stack.influxUrl);
  const analyzer = await startAnalyzer({
    nc: ncAnalyzer,
    sink: createInfluxSink({ url: stack.influxUrl, database: stack.database, api: api.api }),
    prefillMjPerToken: cal.prefillMjPerToken,
    staticPowerW: cal.staticPowerW,
  });
  t.teardown(() => analyzer.stop());

  const wl = workload();
  const results: LoadResult[] = [];
  await runLoad({
    source: (async function* () {
      yield* wl;
    })(),
    targets: Object.values(agent.tapUrls),
    runId: "e2e",
    model: MODEL,
    onResult: (r) => void results.push(r),
  });
  await agent.stop();
  t.true(await analyzer.idle(60_000), "the analyzer caught up");
  const ledger = (await (await fetch(`${sim.url}/admin/ledger`)).json()) as LedgerSnapshot;

  const influx = { url: stack.influxUrl, database: stack.database };
  const [rq] = await influxQuery(influx, `SELECT request_id, energy_j, static_j, active_j, prompt_tokens, output_tokens, incomplete FROM request_energy WHERE "node" = '${node}'`);
  const stored = new Map((rq?.rows ?? []).map((r) => [String(r.request_id), r]));
  const ok = results.filter((r) => r.status === "ok");
  t.is(ok.length, wl.length, "every request served");
  const errors: number[] = [];
  for (const r of ok) {
    const s = stored.get(r.requestId);
    const l = ledger.requests.find((x) => x.requestId === r.requestId);
    if (!t.truthy(s, `no request_energy for ${r.requestId}`) || !t.truthy(l, `no ledger entry for ${r.requestId}`)) continue;
    t.is(Number(s!.output_tokens), r.outputTokens);
    t.false(s!.incomplete);
    const e = Number(s!.energy_j);
    t.true(Math.abs(Number(s!.static_j) + Number(s!.active_j) - e) <= 1e-9 * e, "static + active = energy");
    errors.push(Math.abs(e * 1000 - l!.totalMj) / l!.totalMj);
  }
  errors.sort((a, b) => a - b);
  const median = errors[errors.length >> 1]!;

  // Conservation per window, through InfluxDB: attributed + idle = measured; Σ requests = Σ attributed.
  const [nw] = await influxQuery(influx, `SELECT measured_j, attributed_j, idle_j FROM node_energy WHERE "node" = '${node}'`);
  let attributed = 0;
  for (const w of nw?.rows ?? []) {
    const m = Number(w.measured_j);
    attributed += Number(w.attributed_j);
    t.true(Math.abs(Number(w.attributed_j) + Number(w.idle_j) - m) <= 1e-6 * m, `window ${String(w.time)}`);
  }
  const sumStored = [...stored.values()].reduce((s, r) => s + Number(r.energy_j), 0);
  t.true(Math.abs(sumStored - attributed) <= 1e-6 * attributed, `Σ requests ${sumStored} J vs attributed ${attributed} J`);

  // The bench's library path on the same workload and node: the same rules, no wall clock.
  const lib = simulate(
    wl.map((r) => ({ id: `w${r.index}`, arrivalMs: r.offsetMs, promptTokens: r.promptTokens, outputTokens: r.outputTokens })),
    { model: MODEL, gpus: TP, tp: TP, ledger: true, recordTokenTimes: true, sampleIntervalMs: 100 },
  );
  const libAcc = accuracy(runJoin(observe(lib, { node: "lib", model: MODEL, prefillTokensPerS: cal.prefillTokensPerS }), { prefillMjPerToken: cal.prefillMjPerToken, staticPowerW: cal.staticPowerW }), lib.ledger!);
  t.log(`real processes: median ${(100 * median).toFixed(2)} %, max ${(100 * errors[errors.length - 1]!).toFixed(2)} % over ${errors.length}; library path: median ${libAcc.medianPct} %, p90 ${libAcc.p90Pct} %`);
  t.is(libAcc.matched, wl.length);
  // Real time adds what the library path has not: the sampler reads the counters over HTTP on a
  // timer, token times are the tap's, not the engine's. Bound: 20 % (measured 3.5–8.4 % through real processes in four runs, 3.8–3.9 % library): real-time
  // timing moves it run to run, and the suite runs beside others; the bench measures precision, this catches what breaks.
  t.true(median <= 0.2, `median error ${(100 * median).toFixed(2)} % vs the ledger`);
  t.true(libAcc.medianPct <= 12);
});
