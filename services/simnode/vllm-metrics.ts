import type { InstanceEngine } from "./engine.ts";

/**
 * One instance's scheduler gauges as a vLLM server's /metrics shows them (V1 engine, Prometheus
 * text format 0.0.4 as python's prometheus_client writes it: floats with a decimal point, labels
 * `engine` and `model_name`). vLLM serves one /metrics per server, and a server is one instance, so
 * the simulated node serves these per instance at /i/<id>/metrics: `<upstream>/metrics` for an agent
 * pointed at the instance, as against a real vLLM. The node's own /metrics stays DCGM's (metrics.ts).
 */
const GAUGES = [
  ["vllm:num_requests_running", "Number of requests in model execution batches."],
  ["vllm:num_requests_waiting", "Number of requests waiting to be processed."],
  ["vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage."],
] as const;

/** Renders the gauges of `engine` (advanced to the time of the scrape). */
export function renderVllmMetrics(engine: Pick<InstanceEngine, "running" | "waiting" | "kvUsedTokens">, o: { model: string; kvCapacityTokens: number }): string {
  const labels = `{engine="0",model_name="${o.model.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"}`;
  const values = [engine.running, engine.waiting, o.kvCapacityTokens > 0 ? engine.kvUsedTokens / o.kvCapacityTokens : 0];
  const out: string[] = [];
  GAUGES.forEach(([name, help], k) => out.push(`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, `${name}${labels} ${pyFloat(values[k]!)}`));
  return out.join("\n") + "\n";
}

/** Python's repr of a float: `3.0`, `0.25`. */
function pyFloat(v: number): string {
  return Number.isInteger(v) ? v.toFixed(1) : String(v);
}
