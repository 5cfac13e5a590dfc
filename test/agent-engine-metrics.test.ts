import test from "ava";
import { startSimnode, instanceEndpoints } from "../services/simnode/mod.ts";
import { engineCountsOf, startEngineMetrics } from "../services/agent/engine-metrics.ts";
import type { EngineCounts } from "../services/agent/work-tracker.ts";
import { systemClock } from "../shared/mod.ts";
import { until } from "./helpers/until.ts";

test("engine metrics - the simulated node's per-instance vLLM gauges, scraped at <upstream>/metrics, follow each instance's queue", async (t) => {
  const sim = await startSimnode({ model: "llama-3-8b", gpus: 2, tp: 1 });
  t.teardown(() => sim.stop());
  await fetch(`${sim.url}/admin/config`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ maxBatch: 1 }) });
  const last = new Map<string, EngineCounts>();
  const m = startEngineMetrics({ instances: instanceEndpoints(sim), mode: "on", clock: systemClock(), intervalMs: 50, onCounts: (id, _t, c) => last.set(id, c) });
  t.teardown(() => m.stop());
  const aborts = [0, 1, 2].map(() => new AbortController());
  t.teardown(() => aborts.forEach((a) => a.abort()));
  for (const a of aborts) await fetch(`${sim.url}/i/i0/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: [1, 2, 3], max_tokens: 4000, ignore_eos: true, stream: true }), signal: a.signal });
  await until(() => last.get("i0")?.waiting === 2, 5000, "i0 to show two queued");
  t.deepEqual(last.get("i0"), { running: 1, waiting: 2 });
  t.deepEqual(last.get("i1"), { running: 0, waiting: 0 });
  t.is(m.stats().failures, 0);
});

test("engine metrics - auto leaves a server whose /metrics has no vLLM gauges, and says so once", async (t) => {
  const sim = await startSimnode({ model: "llama-3-8b", gpus: 1 });
  t.teardown(() => sim.stop());
  const lines: string[] = [];
  let counts = 0;
  // The node's root /metrics is DCGM's: no scheduler gauges there.
  const m = startEngineMetrics({ instances: [{ id: "x", upstream: sim.url }], mode: "auto", clock: systemClock(), intervalMs: 50, onCounts: () => counts++, log: (l) => lines.push(l) });
  await until(() => lines.length > 0, 5000, "auto to give up");
  await m.stop();
  t.is(counts, 0);
  t.is(lines.length, 1);
  t.regex(lines[0]!, /no vllm:num_requests_running\/waiting gauges; not scraping it/);
});

test("engine metrics - the counts sum a server's engines; a page without both gauges has none", (t) => {
  const page = ['vllm:num_requests_running{engine="0",model_name="m"} 3.0', 'vllm:num_requests_running{engine="1",model_name="m"} 1.0', 'vllm:num_requests_waiting{engine="0",model_name="m"} 2.0', 'vllm:num_requests_waiting{engine="1",model_name="m"} 0.0'].join("\n");
  t.deepEqual(engineCountsOf(page), { running: 4, waiting: 2 });
  t.is(engineCountsOf('vllm:num_requests_running{model_name="m"} 3.0\n'), undefined);
});
