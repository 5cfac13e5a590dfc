import type { LoadResult } from "../../shared/messages/load.ts";
import { createHistogram, type Histogram, type Percentiles } from "./histogram.ts";

/** Service-level objectives a request must meet to count toward goodput. */
export interface Slo {
  ttftMs?: number;
  tpotMs?: number;
  e2eMs?: number;
}

export interface LoadSummary {
  runId: string;
  worker: string;
  /** Results counted (each request once). */
  requests: number;
  ok: number;
  errors: number;
  timeouts: number;
  aborted: number;
  /** Error messages by count (the first 10 distinct). */
  errorKinds: Record<string, number>;
  promptTokens: number;
  outputTokens: number;
  /** From the first scheduled send to the last completion, s. */
  durationS: number;
  requestRate: number;
  outputTokenRate: number;
  /** sentMs − scheduledMs. */
  lagMs: Percentiles;
  ttftMs: Percentiles;
  tpotMs: Percentiles;
  /** Every inter-token gap of every request (when the runner saw them), else the per-request p50s. */
  itlMs: Percentiles;
  e2eMs: Percentiles;
  goodput?: { slo: Slo; good: number; fraction: number; rate: number };
  byClass: Record<string, { requests: number; ok: number; ttftP50Ms: number; tpotP50Ms: number }>;
}

export interface Aggregator {
  add(r: LoadResult, gaps?: ArrayLike<number>): void;
  summary(): LoadSummary;
}

const MAX_ERROR_KINDS = 10;

export function createAggregator(runId: string, worker: string, slo?: Slo): Aggregator {
  const h = { lag: createHistogram(), ttft: createHistogram(), tpot: createHistogram(), itl: createHistogram(), e2e: createHistogram() };
  const byClass = new Map<string, { requests: number; ok: number; ttft: Histogram; tpot: Histogram }>();
  const errorKinds: Record<string, number> = {};
  let requests = 0, ok = 0, errors = 0, timeouts = 0, aborted = 0, promptTokens = 0, outputTokens = 0, good = 0;
  let firstMs = Infinity, lastMs = -Infinity;
  let sawGaps = false;
  return {
    add(r, gaps) {
      requests++;
      if (r.status === "ok") ok++;
      else if (r.status === "timeout") timeouts++;
      else if (r.status === "aborted") aborted++;
      else errors++;
      if (r.status !== "ok" && r.error) {
        const kind = r.error.replace(/\d{5,}/g, "N").slice(0, 120);
        if (kind in errorKinds || Object.keys(errorKinds).length < MAX_ERROR_KINDS) errorKinds[kind] = (errorKinds[kind] ?? 0) + 1;
      }
      promptTokens += r.promptTokens;
      outputTokens += r.outputTokens;
      firstMs = Math.min(firstMs, r.scheduledMs);
      lastMs = Math.max(lastMs, r.sentMs + (r.e2eMs ?? 0));
      h.lag.record(r.sentMs - r.scheduledMs);
      if (r.ttftMs !== undefined) h.ttft.record(r.ttftMs);
      if (r.tpotMs !== undefined) h.tpot.record(r.tpotMs);
      if (r.e2eMs !== undefined) h.e2e.record(r.e2eMs);
      if (gaps) {
        sawGaps = true;
        for (let i = 0; i < gaps.length; i++) h.itl.record(gaps[i]!);
      } else if (!sawGaps && r.itl && r.itl.count > 0) h.itl.record(r.itl.p50Ms);
      const cls = r.workloadClass ?? "unclassified";
      let c = byClass.get(cls);
      if (!c) byClass.set(cls, (c = { requests: 0, ok: 0, ttft: createHistogram(), tpot: createHistogram() }));
      c.requests++;
      if (r.status === "ok") c.ok++;
      if (r.ttftMs !== undefined) c.ttft.record(r.ttftMs);
      if (r.tpotMs !== undefined) c.tpot.record(r.tpotMs);
      if (slo && meetsSlo(r, slo)) good++;
    },
    summary() {
      const durationS = requests > 0 ? Math.max(0, lastMs - firstMs) / 1000 : 0;
      const rate = (x: number) => (durationS > 0 ? x / durationS : 0);
      return {
        runId,
        worker,
        requests,
        ok,
        errors,
        timeouts,
        aborted,
        errorKinds,
        promptTokens,
        outputTokens,
        durationS,
        requestRate: rate(requests),
        outputTokenRate: rate(outputTokens),
        lagMs: h.lag.summary(),
        ttftMs: h.ttft.summary(),
        tpotMs: h.tpot.summary(),
        itlMs: h.itl.summary(),
        e2eMs: h.e2e.summary(),
        ...(slo ? { goodput: { slo, good, fraction: requests > 0 ? good / requests : 0, rate: rate(good) } } : {}),
        byClass: Object.fromEntries(
          [...byClass.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([k, c]) => [k, { requests: c.requests, ok: c.ok, ttftP50Ms: c.ttft.quantile(0.5), tpotP50Ms: c.tpot.quantile(0.5) }]),
        ),
      };
    },
  };
}

/** A request is good when it succeeded and met every SLO that is set. */
export function meetsSlo(r: LoadResult, slo: Slo): boolean {
  if (r.status !== "ok") return false;
  if (slo.ttftMs !== undefined && !(r.ttftMs !== undefined && r.ttftMs <= slo.ttftMs)) return false;
  // A one-token answer has no TPOT: it meets any TPOT target.
  if (slo.tpotMs !== undefined && r.tpotMs !== undefined && r.tpotMs > slo.tpotMs) return false;
  if (slo.e2eMs !== undefined && !(r.e2eMs !== undefined && r.e2eMs <= slo.e2eMs)) return false;
  return true;
}

const f = (x: number, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : "-");

/** A plain-text table of the summary, for terminals and logs. */
export function formatSummary(s: LoadSummary): string {
  const lines = [
    `run ${s.runId}: ${s.requests} requests, ${s.ok} ok, ${s.errors} errors, ${s.timeouts} timeouts, ${s.aborted} aborted in ${f(s.durationS, 2)} s`,
    `throughput ${f(s.requestRate, 2)} req/s, ${f(s.outputTokenRate, 0)} output tok/s; tokens in ${s.promptTokens}, out ${s.outputTokens}`,
    "",
    "metric (ms)       count      mean       p50       p90       p99       max",
  ];
  const row = (name: string, p: Percentiles) => lines.push(`${name.padEnd(14)}${String(p.count).padStart(8)}${f(p.mean, 2).padStart(10)}${f(p.p50, 2).padStart(10)}${f(p.p90, 2).padStart(10)}${f(p.p99, 2).padStart(10)}${f(p.max, 2).padStart(10)}`);
  row("schedule lag", s.lagMs);
  row("TTFT", s.ttftMs);
  row("TPOT", s.tpotMs);
  row("ITL", s.itlMs);
  row("E2E", s.e2eMs);
  if (s.goodput) {
    const slo = Object.entries(s.goodput.slo).map(([k, v]) => `${k} ≤ ${v}`).join(", ");
    lines.push("", `goodput (${slo}): ${s.goodput.good}/${s.requests} = ${f(100 * s.goodput.fraction)}%, ${f(s.goodput.rate, 2)} req/s`);
  }
  const classes = Object.entries(s.byClass);
  if (classes.length > 1 || (classes.length === 1 && classes[0]![0] !== "unclassified")) {
    lines.push("", "class            requests      ok   TTFT p50   TPOT p50");
    for (const [k, c] of classes) lines.push(`${k.padEnd(16)}${String(c.requests).padStart(9)}${String(c.ok).padStart(8)}${f(c.ttftP50Ms, 2).padStart(11)}${f(c.tpotP50Ms, 2).padStart(11)}`);
  }
  for (const [k, n] of Object.entries(s.errorKinds)) lines.push(`error ×${n}: ${k}`);
  return lines.join("\n") + "\n";
}
