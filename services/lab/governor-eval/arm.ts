import type { NatsConnection } from "@nats-io/nats-core";
import { influxQuery, influxString, subjects, type InfluxTarget, type LoadResult } from "../../../shared/mod.ts";
import { createDecisionSink, startGovernor, type Governor, type PolicyConfig, type Profile } from "../../governor/mod.ts";
import { azureTrace, openResultsOutbox, runLoad } from "../../loadgen/mod.ts";
import { H100_SUPPORTED_SM_CLOCKS_MHZ, modelSpec } from "../../simnode/mod.ts";
import { startEvalFleet } from "./fleet.ts";
import { measureArm, waitForWindows, type ArmEnergy } from "./measure.ts";
import type { ReplayRow } from "./static-replay.ts";

/**
 * One arm of the evaluation: a fresh simulated fleet split in two pools (conversation and code,
 * each replaying its Azure 2023 trace over the same window), its clocks run one way — `max` (left
 * at the maximum), `static` (each pool locked, through clock control, for the whole run, at the
 * cheapest clock that holds the SLO on a library-mode replay of its trace: static-replay.ts),
 * `governor` (a governor in this process, acting through clock control like any other) — then the
 * energy and attainment read back from InfluxDB.
 */
export type ArmName = "max" | "static" | "governor";

export interface Pool {
  name: "conv" | "code";
  trace: string;
  /** Clock of the static arm for this pool, MHz (the cheapest that holds the SLO on a replay of the pool's trace). */
  staticMhz: number;
  /** The lab's steady-load sweep's choice for the pool's class mix, and what it keeps on the replay (information). */
  sweepMhz?: number;
  sweepReplay?: ReplayRow;
  /** The replay at each candidate clock. */
  replay?: ReplayRow[];
}

export interface ArmContext {
  nc: NatsConnection;
  influx: InfluxTarget;
  pools: Pool[];
  nodesPerPool: number;
  gpus: number;
  model: string;
  seed: number;
  /** Trace window (trace time), speed-up and share of rows kept. */
  windowMs: number;
  speedup: number;
  sample: number;
  /** After the trace's last arrival, how long the arm still runs and is measured (wall ms). */
  tailMs: number;
  slo: { ttftSloMs: number; tpotSloMs: number; attainmentTarget: number };
  governor: { periodMs: number; policy: Partial<Omit<PolicyConfig, "supportedMhz" | "ttftSloMs" | "tpotSloMs" | "attainmentTarget">>; profile?: Profile };
  /** Stamp that makes this evaluation's node ids and run ids its own. */
  stamp: string;
  log: (l: string) => void;
  signal?: AbortSignal;
}

export interface ArmResult {
  arm: ArmName;
  t0Ms: number;
  t1Ms: number;
  runIds: string[];
  /** Client side (the load generator): sent, ok, finished by t1, met both SLOs. */
  sent: number;
  ok: number;
  finishedInWindow: number;
  metSlo: number;
  /** metSlo / sent. */
  attainment: number;
  byPool: Record<string, { sent: number; metSlo: number; nodes: string[]; staticMhz?: number }>;
  energy: ArmEnergy;
  /** Decisions by action; why it went up, and why it held per pool (reasons without their figures). */
  governor?: { decisions: number; sets: number; byAction: Record<string, number>; upReasons: Record<string, number>; holdReasons: Record<string, number> };
}

const LEAD_MS = 2000;
export const governorId = (stamp: string) => `governor-eval-${stamp}`;

export async function runArm(arm: ArmName, c: ArmContext): Promise<ArmResult> {
  const prefix = `ge${c.stamp}-${arm}`;
  const fleet = await startEvalFleet({ nc: c.nc, prefix, nodes: c.pools.length * c.nodesPerPool, gpus: c.gpus, model: c.model, seed: c.seed });
  let gov: Governor | undefined;
  const outbox = openResultsOutbox(c.nc);
  try {
    const poolNodes = c.pools.map((p, i) => ({ pool: p, nodes: fleet.nodes.slice(i * c.nodesPerPool, (i + 1) * c.nodesPerPool) }));
    const wallMs = c.windowMs / c.speedup;
    const leaseMs = Math.round(wallMs + c.tailMs + 120_000);
    if (arm === "static") {
      for (const { pool, nodes } of poolNodes) {
        for (const n of nodes) {
          const m = await c.nc.request(`${subjects.control(n.id)}.set`, JSON.stringify({ gpus: n.sim.instances[0]!.gpus, smClockMhz: pool.staticMhz, leaseMs, by: "governor-eval-static" }), { timeout: 10_000 });
          if (m.headers?.get("Nats-Service-Error")) throw new Error(`static clock on ${n.id}: ${m.headers.get("Nats-Service-Error")}`);
        }
        c.log(`static: ${pool.name} pool (${nodes.map((n) => n.id).join(", ")}) locked at ${pool.staticMhz} MHz`);
      }
    }
    if (arm === "governor") {
      gov = await startGovernor({
        nc: c.nc, id: governorId(c.stamp), periodMs: c.governor.periodMs, leaseMs: Math.max(1000, 3 * c.governor.periodMs), dryRun: false, slo: c.slo, policy: c.governor.policy,
        ...(c.governor.profile ? { profile: c.governor.profile } : {}), nodes: fleet.nodes.map((n) => n.id),
        // The agent reads a simnode through its DCGM-style /metrics, which lists no clocks: the simulated H100's steps.
        fallbackClocksMhz: [...H100_SUPPORTED_SM_CLOCKS_MHZ], decisionSink: createDecisionSink({ url: c.influx.url, database: c.influx.database }), log: c.log,
      });
    }
    const maxContext = modelSpec(c.model).maxContext;
    const maxOutputTokens = Math.min(1024, Math.floor(maxContext / 4));
    const t0Ms = Date.now() + LEAD_MS;
    const t1Ms = t0Ms + wallMs + c.tailMs;
    const results = new Map<string, LoadResult[]>();
    const runIds: string[] = [];
    let sent = 0;
    const progress = setInterval(() => c.log(`${arm}: ${((Date.now() - t0Ms) / 1000).toFixed(0)} s of ${((t1Ms - t0Ms) / 1000).toFixed(0)}, ${sent} requests sent${gov ? `, governor: ${gov.stats().sets} clock changes (${gov.stats().boosts} burst-guard boosts)` : ""}`), 30_000);
    progress.unref();
    try {
      await Promise.all(poolNodes.map(async ({ pool, nodes }) => {
        const runId = `${prefix}-${pool.name}`;
        runIds.push(runId);
        const mine: LoadResult[] = [];
        results.set(pool.name, mine);
        await runLoad({
          source: azureTrace(pool.trace, { speedup: c.speedup, windowMs: c.windowMs, sample: c.sample, seed: c.seed, maxPromptTokens: maxContext - maxOutputTokens, maxOutputTokens }),
          targets: nodes.map((n) => n.tapUrl), runId, model: c.model, startAtMs: t0Ms, ...(c.signal ? { signal: c.signal } : {}),
          onSent: () => void sent++,
          onResult: (r) => {
            mine.push(r);
            outbox.publish(r);
          },
        });
      }));
      const rest = t1Ms - Date.now();
      if (rest > 0 && !c.signal?.aborted) await new Promise((r) => setTimeout(r, rest));
    } finally {
      clearInterval(progress);
    }
    const govStats = gov?.stats();
    await gov?.stop();
    gov = undefined;
    await fleet.stop();
    if (!(await outbox.drain(30_000))) c.log(`${arm}: some load results did not reach LOAD within 30 s`);
    await waitForWindows(c.influx, prefix, fleet.nodes.length, t1Ms, 90_000, c.signal);
    // The analyzer joins LOAD with request energy as both arrive: give the last requests a moment.
    await new Promise((r) => setTimeout(r, 3000));
    const energy = await measureArm(c.influx, { prefix, runIds, t0Ms, t1Ms, bucketS: Math.max(1, Math.round((t1Ms - t0Ms) / 1000 / 60)) });
    const met = (r: LoadResult) => r.status === "ok" && r.ttftMs !== undefined && r.ttftMs <= c.slo.ttftSloMs && (r.tpotMs === undefined || r.outputTokens <= 1 || r.tpotMs <= c.slo.tpotSloMs);
    const all = [...results.values()].flat();
    const byPool: ArmResult["byPool"] = {};
    for (const { pool, nodes } of poolNodes) {
      const rs = results.get(pool.name) ?? [];
      byPool[pool.name] = { sent: rs.length, metSlo: rs.filter(met).length, nodes: nodes.map((n) => n.id), ...(arm === "static" ? { staticMhz: pool.staticMhz } : {}) };
    }
    const metSlo = all.filter(met).length;
    const byAction: Record<string, number> = {};
    const upReasons: Record<string, number> = {};
    const holdReasons: Record<string, number> = {};
    if (govStats) {
      const q = `SELECT count("to_mhz") AS n FROM "governor_decision" WHERE "governor" = ${influxString(governorId(c.stamp))} AND time >= ${t0Ms - LEAD_MS}ms AND time < ${t1Ms}ms GROUP BY "action"`;
      for (const s of await influxQuery(c.influx, q)) byAction[s.tags.action ?? "?"] = Number(s.rows[0]?.n ?? 0);
      // The burst guard's moves apart from the period's decisions ("guard max 247").
      for (const s of await influxQuery(c.influx, q.replace(" GROUP BY", ` AND "guard" = true GROUP BY`))) {
        const a = s.tags.action ?? "?";
        const n = Number(s.rows[0]?.n ?? 0);
        byAction[a] = (byAction[a] ?? 0) - n;
        if (n > 0) byAction[`guard ${a}`] = n;
      }
      // Why it went up: the reasons' words before their first figure ("queue grew from", "SLO attainment", …).
      const rq = `SELECT "reason" FROM "governor_decision" WHERE "governor" = ${influxString(governorId(c.stamp))} AND time >= ${t0Ms - LEAD_MS}ms AND time < ${t1Ms}ms GROUP BY "action", "node"`;
      for (const s of await influxQuery(c.influx, rq)) {
        const up = s.tags.action === "max" || s.tags.action === "up";
        const pool = poolNodes.find((p) => p.nodes.some((n) => n.id === s.tags.node))?.pool.name ?? "?";
        for (const row of s.rows) {
          // The reason's words without its figures ("p90 TTFT % / TPOT % of SLO, attainment %: inside the % margin band").
          const why = String(row.reason ?? "?").replace(/[0-9][0-9.,]*/g, "").replace(/\s+/g, " ").trim();
          if (up) upReasons[why.split(/ from | of | < /)[0]!] = (upReasons[why.split(/ from | of | < /)[0]!] ?? 0) + 1;
          else if (s.tags.action === "hold") holdReasons[`${pool}: ${why}`] = (holdReasons[`${pool}: ${why}`] ?? 0) + 1;
        }
      }
    }
    return {
      arm, t0Ms, t1Ms, runIds, sent: all.length, ok: all.filter((r) => r.status === "ok").length,
      finishedInWindow: all.filter((r) => r.status === "ok" && r.sentMs + (r.e2eMs ?? Infinity) < t1Ms).length,
      metSlo, attainment: all.length > 0 ? metSlo / all.length : 0, byPool, energy,
      ...(govStats ? { governor: { decisions: govStats.decisions, sets: govStats.sets, byAction, upReasons, holdReasons } } : {}),
    };
  } finally {
    await gov?.stop().catch(() => undefined);
    await fleet.stop();
    await outbox.close();
  }
}
