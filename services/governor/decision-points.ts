import { PermanentError, RetryableError, errorMessage, type GovernorDecision } from "../../shared/mod.ts";

/**
 * The governor's decisions as InfluxDB points (`governor_decision`), so a dashboard shows them over
 * time beside SLO attainment and the clocks. Written by the governor itself (the analyzer does not
 * read AUDIT): one POST per control period to `/write` — InfluxDB 1.x's API, which 2.x serves
 * through its v1 compatibility endpoint (DBRP mapping) and 3.x natively — in millisecond precision.
 * Tags: node, instance, governor, action (low cardinality); the reason is a field.
 */
export interface DecisionSinkOptions {
  url: string;
  database: string;
  /** 2.x/3.x token (`Authorization: Token …`). */
  token?: string;
  timeoutMs?: number;
}

export type DecisionSink = (decisions: readonly GovernorDecision[]) => Promise<void>;

const tagEsc = (s: string) => s.replace(/[,= \\]/g, (c) => `\\${c}`);
const strEsc = (s: string) => `"${s.replace(/[\\"]/g, (c) => `\\${c}`).replace(/\n/g, " ")}"`;
const f = (x: number) => (Number.isFinite(x) ? String(x) : undefined);

export function decisionLine(d: GovernorDecision): string {
  const fields: [string, string | undefined][] = [
    ["from_mhz", f(d.fromMhz)],
    ["to_mhz", f(d.toMhz)],
    ["applied", String(d.applied)],
    ["dry_run", String(d.dryRun)],
    ["requests", `${d.requests}i`],
    ["reason", strEsc(d.reason)],
    ["not_applied", d.notApplied !== undefined ? strEsc(d.notApplied) : undefined],
    ["attainment", d.attainment !== undefined ? f(d.attainment) : undefined],
    ["ttft_p90_ms", d.ttftP90Ms !== undefined ? f(d.ttftP90Ms) : undefined],
    ["tpot_p90_ms", d.tpotP90Ms !== undefined ? f(d.tpotP90Ms) : undefined],
    ["in_flight", d.inFlight !== undefined ? `${d.inFlight}i` : undefined],
    ["j_per_output_token", d.jPerOutputToken !== undefined ? f(d.jPerOutputToken) : undefined],
    ["prior_mhz", d.priorMhz !== undefined ? f(d.priorMhz) : undefined],
    ["guard", d.guard !== undefined ? String(d.guard) : undefined],
    ["waiting", d.waiting !== undefined ? `${d.waiting}i` : undefined],
  ];
  const set = fields.filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${v}`).join(",");
  return `governor_decision,action=${tagEsc(d.action)},governor=${tagEsc(d.governor)},instance=${tagEsc(d.instance)},node=${tagEsc(d.node)} ${set} ${Math.round(d.tMs)}`;
}

export function createDecisionSink(o: DecisionSinkOptions): DecisionSink {
  const url = new URL("/write", o.url);
  url.searchParams.set("db", o.database);
  url.searchParams.set("precision", "ms");
  const headers: Record<string, string> = { "content-type": "text/plain; charset=utf-8" };
  if (o.token) headers.authorization = `Token ${o.token}`;
  return async (decisions) => {
    if (decisions.length === 0) return;
    let res: Response;
    try {
      res = await fetch(url, { method: "POST", headers, body: decisions.map(decisionLine).join("\n"), signal: AbortSignal.timeout(o.timeoutMs ?? 5000) });
    } catch (err) {
      throw new RetryableError("UNAVAILABLE", `InfluxDB at ${o.url} unreachable: ${errorMessage(err)}`, err);
    }
    if (!res.ok) {
      const E = res.status >= 500 ? RetryableError : PermanentError;
      throw new E(res.status >= 500 ? "UNAVAILABLE" : "SCHEMA", `governor_decision write refused (HTTP ${res.status}): ${(await res.text()).slice(0, 200)}`);
    }
  };
}
