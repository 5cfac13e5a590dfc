import { influxQuery, influxString, type InfluxTarget } from "../../shared/influxql.ts";
import { RetryableError } from "../../shared/errors.ts";
import type { LoadResult } from "../../shared/messages/load.ts";
import { runLoad, type Workload } from "../loadgen/mod.ts";
import type { PointRunner } from "./library-runner.ts";
import { pointId, type PointSpec } from "./matrix.ts";
import type { MeasuredRequest, WindowMeasurement } from "./metrics.ts";
import { pointWorkload, requestRate } from "./workload.ts";
import type { KnobController } from "./controllers.ts";

/**
 * Real-time mode: set the point's knobs through a controller (a simnode's /admin/config, or an
 * agent's clock control plus labelled endpoints), send the point's workload open-loop through the
 * agent's tap, and read the window's energy and tokens back from InfluxDB as the analyzer wrote
 * them (node_energy, instance_energy, gpu_energy). Latencies are the load generator's, client side.
 */
export interface RealtimeRunnerOptions {
  controller: KnobController;
  influx: InfluxTarget;
  /** The node id the agent publishes as (InfluxDB tag `node`). */
  node: string;
  /** How long to wait for the analyzer to write the window's last second, ms. Default 60 s. */
  settleTimeoutMs?: number;
  /** Lead time between building the schedule and the first request, ms. Default 300. */
  leadMs?: number;
  log?: (line: string) => void;
}

async function* asWorkload(p: PointSpec): Workload {
  let index = 0;
  for (const r of pointWorkload(p)) yield { index: index++, offsetMs: r.arrivalMs, promptTokens: r.promptTokens, outputTokens: r.outputTokens, workloadClass: p.workloadClass };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : 0);

export function createRealtimeRunner(o: RealtimeRunnerOptions): PointRunner {
  return {
    mode: o.controller.mode,
    restore: () => o.controller.restore(),
    async measure(p, signal) {
      const wall0 = performance.now();
      const { targets } = await o.controller.apply(p);
      const runId = `sweep-${Date.now().toString(36)}`;
      const startAtMs = Date.now() + (o.leadMs ?? 300);
      const results: LoadResult[] = [];
      await runLoad({ source: asWorkload(p), targets, runId, model: p.model, startAtMs, ...(signal ? { signal } : {}), onResult: (r) => void results.push(r) });
      // Whole analyzer windows (1 s) inside [warmup, warmup + measure).
      const w0 = Math.ceil((startAtMs + p.warmupS * 1000) / 1000) * 1000;
      const w1 = Math.floor((startAtMs + (p.warmupS + p.measureS) * 1000) / 1000) * 1000;
      const where = `"node" = ${influxString(o.node)} AND time >= ${w0}ms AND time < ${w1}ms`;
      const deadline = Date.now() + (o.settleTimeoutMs ?? 60_000);
      for (;;) {
        const last = await influxQuery(o.influx, `SELECT last("measured_j") FROM "node_energy" WHERE "node" = ${influxString(o.node)} AND time >= ${w1 - 1000}ms`);
        if (last.some((s) => s.rows.length > 0)) break;
        if (signal?.aborted) break;
        if (Date.now() > deadline) throw new RetryableError("TIMEOUT", `the analyzer wrote no node_energy for ${o.node} at ${new Date(w1 - 1000).toISOString()} within ${o.settleTimeoutMs ?? 60_000} ms (point ${pointId(p)})`);
        await sleep(500);
      }
      const [energy] = await influxQuery(o.influx, `SELECT sum("measured_j") AS e, count("measured_j") AS n FROM "node_energy" WHERE ${where}`);
      const [tokens] = await influxQuery(o.influx, `SELECT sum("prefill_tokens") AS p, sum("decode_tokens") AS d, mean("active_requests") AS b FROM "instance_energy" WHERE ${where}`);
      const [clock] = await influxQuery(o.influx, `SELECT mean("sm_clock_mhz") AS f FROM "gpu_energy" WHERE ${where} AND "util_pct" > 0`);
      const requests: MeasuredRequest[] = [];
      let completed = 0;
      for (const r of results) {
        const end = r.sentMs + (r.e2eMs ?? Infinity);
        if (r.status === "ok" && end >= w0 && end < w1) completed++;
        if (r.scheduledMs < w0 || r.scheduledMs >= w1) continue;
        requests.push({ ok: r.status === "ok", ...(r.ttftMs !== undefined ? { ttftMs: r.ttftMs } : {}), ...(r.tpotMs !== undefined && r.outputTokens > 1 ? { tpotMs: r.tpotMs } : {}), ...(r.e2eMs !== undefined ? { e2eMs: r.e2eMs } : {}) });
      }
      const e = energy?.rows[0] ?? {};
      const t = tokens?.rows[0] ?? {};
      return {
        mode: o.controller.mode,
        windowMs: w1 - w0,
        energyJ: num(e.e),
        promptTokens: num(t.p),
        outputTokens: num(t.d),
        completed,
        requests,
        offeredRequestsPerS: requestRate(p),
        smClockActualMhz: num(clock?.rows[0]?.f) || p.smClockMhz,
        meanBatch: num(t.b),
        wallMs: performance.now() - wall0,
      } satisfies WindowMeasurement;
    },
  };
}
