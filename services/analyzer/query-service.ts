import type { NatsConnection } from "@nats-io/nats-core";
import { Svcm, type Service } from "@nats-io/services";
import { describeIssues, errorMessage, influxQuery, influxString, respondServiceError, subjects, type InfluxTarget, summaryRequest, type GroupSummary, type Summary, type SummaryRequest } from "../../shared/mod.ts";

export { summaryRequest, type GroupSummary, type Summary, type SummaryRequest };

/**
 * The analyzer's query API, a NATS service (`joulestream.query.v1.summary`, JSON request/reply):
 * energy per request and per token by model and workload class (and SM clock when known), latency
 * percentiles, SLO attainment and the idle share, for a time range and/or one load run. Answers
 * come from InfluxDB, so any replica answers for the whole fleet.
 *
 * Per-request figures are over served requests only (status ok): a refused request did next to no
 * work and an aborted one stopped early, so counted with the served they pulled the joules per
 * request and the latency percentiles down. They are counted apart, with their energy.
 */
function where(r: SummaryRequest, withRun: boolean): string {
  const c: string[] = [];
  if (r.fromMs !== undefined) c.push(`time >= ${Math.floor(r.fromMs)}ms`);
  if (r.toMs !== undefined) c.push(`time <= ${Math.ceil(r.toMs)}ms`);
  if (withRun && r.runId) c.push(`run_id = '${r.runId}'`);
  if (r.node) c.push(`node = '${r.node}'`);
  return c.length ? `WHERE ${c.join(" AND ")}` : "";
}

/**
 * node_energy has no run: for a run, the measured/idle totals are those of the nodes that served it
 * while it ran (its first request's start to its last request's end), within any range asked for;
 * without that bound they were the whole database's (every node, every earlier run).
 */
async function energyWhere(influx: InfluxTarget, r: SummaryRequest): Promise<string | undefined> {
  if (!r.runId) return where(r, false);
  const w = where(r, true);
  const one = async (q: string) => (await influxQuery(influx, q))[0]?.rows[0];
  const first = await one(`SELECT FIRST(energy_j) FROM request_energy ${w}`);
  const last = await one(`SELECT LAST(energy_j) FROM request_energy ${w}`);
  const longest = await one(`SELECT MAX(duration_ms) AS d FROM request_energy ${w}`);
  const nodes = r.node ? [r.node] : (await influxQuery(influx, `SHOW TAG VALUES FROM request_energy WITH KEY = "node" WHERE run_id = '${r.runId}'`)).flatMap((s) => s.rows.map((x) => String(x.value)));
  if (!first || !last || nodes.length === 0) return undefined; // the run has no requests (in range)
  // Windows are stamped with their start (whole seconds at the default 1 s publish interval).
  const fromMs = Math.max(Math.floor(Number(first.time) / 1000) * 1000, r.fromMs ?? 0);
  const toMs = Math.min(Number(last.time) + Number(longest?.d ?? 0), r.toMs ?? Infinity);
  return `WHERE time >= ${Math.floor(fromMs)}ms AND time <= ${Math.ceil(toMs)}ms AND (${nodes.map((n) => `node = ${influxString(n)}`).join(" OR ")})`;
}

const num = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);

export async function querySummary(influx: InfluxTarget, r: SummaryRequest): Promise<Summary> {
  const w = where(r, true);
  const series = await influxQuery(
    influx,
    `SELECT COUNT(energy_j) AS n, SUM(energy_j) AS e, SUM(output_tokens) AS o, SUM(prompt_tokens) AS p, MEAN(energy_j) AS em, PERCENTILE(energy_j, 50) AS e50, PERCENTILE(energy_j, 99) AS e99, PERCENTILE(ttft_ms, 50) AS t50, PERCENTILE(ttft_ms, 99) AS t99, PERCENTILE(tpot_ms, 50) AS tp50, PERCENTILE(tpot_ms, 99) AS tp99, PERCENTILE(e2e_ms, 50) AS e2e50, PERCENTILE(e2e_ms, 99) AS e2e99, COUNT(slo_met) AS joined FROM request_energy ${w} GROUP BY model, workload_class, status`,
  );
  // One series per (model, class, status): the served one gives the figures, the others their counts.
  const byGroup = new Map<string, { model: string; workloadClass: string; rows: Map<string, Record<string, unknown>> }>();
  for (const s of series) {
    const model = s.tags.model ?? "unknown";
    const workloadClass = s.tags.workload_class ?? "none";
    const key = `${model}|${workloadClass}`;
    let g = byGroup.get(key);
    if (!g) byGroup.set(key, (g = { model, workloadClass, rows: new Map() }));
    g.rows.set(s.tags.status ?? "ok", s.rows[0] ?? {});
  }
  const met = await influxQuery(influx, `SELECT COUNT(slo_met) AS met FROM request_energy ${w ? `${w} AND` : "WHERE"} slo_met = true GROUP BY model, workload_class`);
  const metBy = new Map(met.map((s) => [`${s.tags.model ?? "unknown"}|${s.tags.workload_class ?? "none"}`, Number(s.rows[0]?.met ?? 0)]));
  const ew = await energyWhere(influx, r);
  const energy = ew === undefined ? [] : await influxQuery(influx, `SELECT SUM(measured_j) AS m, SUM(attributed_j) AS a, SUM(idle_j) AS i FROM node_energy ${ew}`);
  const e = energy[0]?.rows[0] ?? {};
  const measuredJ = Number(e.m ?? 0);
  const idleJ = Number(e.i ?? 0);
  return {
    request: r,
    groups: [...byGroup.values()].map(({ model, workloadClass, rows }) => {
      const row = rows.get("ok") ?? {};
      const refused = rows.get("error") ?? {};
      const aborted = rows.get("aborted") ?? {};
      const n = Number(row.n ?? 0);
      const eJ = Number(row.e ?? 0);
      const o = Number(row.o ?? 0);
      const p = Number(row.p ?? 0);
      let joined = 0;
      for (const r of rows.values()) joined += Number(r.joined ?? 0);
      return {
        model,
        workloadClass,
        requests: n,
        energyJ: eJ,
        outputTokens: o,
        promptTokens: p,
        jPerRequest: { mean: Number(row.em ?? 0), p50: Number(row.e50 ?? 0), p99: Number(row.e99 ?? 0) },
        jPerOutputToken: o > 0 ? eJ / o : 0,
        jPerToken: o + p > 0 ? eJ / (o + p) : 0,
        ttftMs: { p50: num(row.t50), p99: num(row.t99) },
        tpotMs: { p50: num(row.tp50), p99: num(row.tp99) },
        e2eMs: { p50: num(row.e2e50), p99: num(row.e2e99) },
        refused: { requests: Number(refused.n ?? 0), energyJ: Number(refused.e ?? 0) },
        aborted: { requests: Number(aborted.n ?? 0), energyJ: Number(aborted.e ?? 0), outputTokens: Number(aborted.o ?? 0) },
        sloAttainment: joined > 0 ? (metBy.get(`${model}|${workloadClass}`) ?? 0) / joined : null,
      };
    }),
    measuredJ,
    attributedJ: Number(e.a ?? 0),
    idleJ,
    idleShare: measuredJ > 0 ? idleJ / measuredJ : 0,
  };
}

export async function startQueryService(nc: NatsConnection, influx: InfluxTarget): Promise<Service> {
  const svc = await new Svcm(nc).add({ name: "joulestream-query", version: "1.0.0", description: "energy per request and per token, by model / workload class" });
  svc.addEndpoint("summary", {
    subject: `${subjects.query}.summary`,
    handler: (_err, m) => {
      void (async () => {
        let raw: unknown;
        try {
          raw = m.data.length ? JSON.parse(new TextDecoder().decode(m.data)) : {};
        } catch (err) {
          respondServiceError(m, 400, `bad request: ${errorMessage(err)}`);
          return;
        }
        const parsed = summaryRequest.safeParse(raw);
        if (!parsed.success) {
          respondServiceError(m, 400, `bad request: ${describeIssues(parsed.error)}`);
          return;
        }
        const req: SummaryRequest = parsed.data;
        try {
          m.respond(JSON.stringify(await querySummary(influx, req)));
        } catch (err) {
          respondServiceError(m, 503, errorMessage(err));
        }
      })().catch(() => {}); // a reply that cannot be sent (connection closing) must not end the process
    },
  });
  return svc;
}
