/**
 * Library-mode speed: one hour of the Azure 2023 conversation trace on a simulated 8×H100 node,
 * one TP=8 instance of a 70B model.   npm run bench -- simnode-library [trace.csv]
 */
import { fileURLToPath } from "node:url";
import { simulate, type WorkloadRequest } from "../services/simnode/mod.ts";
import { traceRows } from "../services/loadgen/mod.ts";

const trace = process.argv[2] ?? fileURLToPath(new URL("../load/traces/azure/AzureLLMInferenceTrace_conv.csv", import.meta.url));
const tLoad = performance.now();
const workload = await azureHour(trace);
const loadMs = performance.now() - tLoad;

/** The trace's first hour as simulator requests, read by the load generator's Azure parser (zero-length rows cannot be served). */
async function azureHour(path: string): Promise<WorkloadRequest[]> {
  const out: WorkloadRequest[] = [];
  let t0: number | undefined;
  for await (const row of traceRows(path, "azure")) {
    t0 ??= row.tMs;
    const arrivalMs = row.tMs - t0;
    if (arrivalMs >= 3600_000) break;
    if (row.promptTokens >= 1 && row.outputTokens >= 1) out.push({ id: `row${row.line}`, arrivalMs, promptTokens: row.promptTokens, outputTokens: row.outputTokens });
  }
  return out;
}
const rows: Record<string, number | string>[] = [];
for (const model of ["llama-2-70b", "llama-3-70b"]) {
  const t0 = performance.now();
  const r = simulate(workload, { gpus: 8, tp: 8, model });
  const wallMs = performance.now() - t0;
  const ttft = r.requests.map((q) => q.ttftMs).sort((a, b) => a - b);
  rows.push({
    model,
    requests: workload.length,
    rejected: r.rejected.length,
    simulatedS: +(r.durationMs / 1000).toFixed(0),
    wallMs: +wallMs.toFixed(0),
    speedup: +((r.durationMs / wallMs)).toFixed(0),
    energyKWh: +(r.totalEnergyJ / 3.6e6).toFixed(3),
    avgPowerW: +((r.totalEnergyJ * 1000) / r.durationMs).toFixed(0),
    jPerOutTok: +(r.totalEnergyJ / r.outputTokens).toFixed(3),
    ttftP50Ms: +ttft[ttft.length >> 1]!.toFixed(1),
  });
}
console.log(`trace: ${trace} (${workload.length} requests, parsed in ${loadMs.toFixed(0)} ms); node: 8× H100 SXM, TP=8\n`);
const cols = Object.keys(rows[0]!);
console.log(cols.map((c) => c.padStart(12)).join(""));
for (const r of rows) console.log(cols.map((c) => String(r[c]).padStart(12)).join(""));
console.log(JSON.stringify({ bench: "simnode-library", parseMs: +loadMs.toFixed(0), runs: rows }));
