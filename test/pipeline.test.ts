import test from "ava";
import { runDemo } from "../services/cli/demo.ts";
import { influxQuery } from "../shared/mod.ts";

/**
 * The whole pipeline against real servers: nats-server and influxd started on random loopback
 * ports, a simulated node, the agent's tap and sampler, the analyzer, and open-loop load. What is
 * checked is what landed in InfluxDB.
 */
test("pipeline - requests flow end to end and their energy lands in InfluxDB, conserved", async (t) => {
  t.timeout(120_000);
  const lines: string[] = [];
  const result = await runDemo({
    duration: 6,
    synthetic: true,
    rate: 3,
    workload: "short-short",
    speedup: 1,
    gpus: 8,
    tp: 4,
    model: "llama-2-70b",
    seed: 7,
    log: (l) => lines.push(l),
  });
  t.truthy(result, lines.join("\n"));
  const { summary, results } = result!;
  const ok = results.filter((r) => r.status === "ok");
  t.true(ok.length >= 5, `only ${ok.length} requests succeeded`);
  // Every successful request has its energy record, with positive energy and the server's token counts.
  t.is(summary.requests.length, ok.length, `stored ${summary.requests.map((r) => r.id).sort().join(",")}\nok ${ok.map((r) => r.requestId).sort().join(",")}\n${lines.join("\n")}`);
  const byId = new Map(summary.requests.map((r) => [r.id, r]));
  for (const r of ok) {
    const e = byId.get(r.requestId);
    t.truthy(e, `no energy for ${r.requestId}`);
    t.true(e!.energyJ > 0);
    t.is(e!.outputTokens, r.outputTokens);
    t.is(e!.promptTokens, r.promptTokens);
  }
  const { measuredEnergyJ, attributedEnergyJ, idleEnergyJ } = summary.totals;
  t.true(measuredEnergyJ > 0);
  t.true(Math.abs(measuredEnergyJ - (attributedEnergyJ + idleEnergyJ)) <= 1e-6 * measuredEnergyJ);
  // Attributed energy in InfluxDB is the sum of the per-request energies.
  const sumReq = summary.requests.reduce((s, r) => s + r.energyJ, 0);
  t.true(Math.abs(sumReq - attributedEnergyJ) <= 1e-6 * measuredEnergyJ, `Σ requests ${sumReq} vs attributed ${attributedEnergyJ}`);
});

test("pipeline - GPU power samples land in InfluxDB at 10 Hz for every GPU, CPU energy per window beside them", async (t) => {
  t.timeout(120_000);
  let probe: { gpus: number; samples: number; cpuJ: number[] } | undefined;
  // A CPU package at a steady 50 W (50 mJ per ms): every full window must say 50 J of CPU energy.
  const t0 = Date.now();
  const cpuEnergy = { packages: 1, read: () => ({ energyMj: 50 * (Date.now() - t0), tMs: Date.now() }) };
  const result = await runDemo({
    duration: 3,
    synthetic: true,
    rate: 2,
    workload: "short-short",
    speedup: 1,
    gpus: 4,
    tp: 2,
    model: "llama-2-13b",
    seed: 1,
    cpuEnergy,
    inspect: async (influx) => {
      const s = await influxQuery(influx, "SELECT SUM(samples) AS n FROM gpu_energy GROUP BY gpu");
      const cpu = await influxQuery(influx, "SELECT cpu_j FROM node_energy");
      probe = { gpus: s.length, samples: Math.min(...s.map((x) => Number(x.rows[0]?.n ?? 0))), cpuJ: (cpu[0]?.rows ?? []).map((r) => Number(r.cpu_j)) };
    },
  });
  t.truthy(result);
  t.is(probe?.gpus, 4);
  // ≥ 3 s of load at 10 Hz, minus start-up: at least 25 samples per GPU.
  t.true((probe?.samples ?? 0) >= 25, `samples per GPU: ${probe?.samples}`);
  // CPU energy per window lands beside the GPUs' (windows close on the first tick after their end).
  const cpuJ = [...(probe?.cpuJ ?? [])].sort((a, b) => a - b);
  t.true(cpuJ.length >= 3, `node_energy.cpu_j: ${cpuJ.join(", ")}`);
  t.true(Math.abs(cpuJ[cpuJ.length >> 1]! - 50) < 5, `node_energy.cpu_j: ${cpuJ.join(", ")}`);
});
