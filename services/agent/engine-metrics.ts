import { errorMessage, type Clock } from "../../shared/mod.ts";
import { parsePrometheusText } from "./prometheus.ts";
import type { EngineCounts } from "./work-tracker.ts";

/**
 * Scrapes each instance's inference server for its scheduler gauges — vLLM's /metrics,
 * `vllm:num_requests_running` and `vllm:num_requests_waiting` (summed over the `engine` and
 * `model_name` labels: one server, one instance) — at `<upstream>/metrics`, every `intervalMs`, and
 * hands the counts to `onCounts` (the work tracker: prefill-spread.ts reads admission from them).
 * One scrape in flight per instance; a slow one is cut at the interval.
 *
 * Modes: `on` scrapes every instance for as long as the agent runs, and says when one cannot be read
 * (once until it can again); `auto` does the same, but stops for an instance whose server answers
 * 404 or without the gauges (not a vLLM), and says so once. An unreachable server is tried again either way.
 */
export type EngineMetricsMode = "auto" | "on" | "off";

export interface EngineMetricsOptions {
  instances: readonly { id: string; upstream: string }[];
  mode: EngineMetricsMode;
  clock: Clock;
  intervalMs?: number;
  onCounts(instance: string, tMs: number, counts: EngineCounts): void;
  log?: (line: string) => void;
}

export interface EngineMetricsStats {
  scrapes: number;
  failures: number;
}

export interface EngineMetrics {
  stats(): EngineMetricsStats;
  /** Idempotent; waits for the scrapes in flight. */
  stop(): Promise<void>;
}

/** 5 Hz: on the bench, 1 Hz was worse than none on Azure code (a queued prompt is seen admitted late). */
export const DEFAULT_ENGINE_METRICS_INTERVAL_MS = 200;

export function engineMetricsUrl(upstream: string): string {
  return `${upstream.replace(/\/+$/, "")}/metrics`;
}

/** The gauges in a scrape, or undefined when it has none. */
export function engineCountsOf(text: string): EngineCounts | undefined {
  let running: number | undefined;
  let waiting: number | undefined;
  for (const s of parsePrometheusText(text)) {
    if (!Number.isFinite(s.value)) continue;
    if (s.name === "vllm:num_requests_running") running = (running ?? 0) + s.value;
    else if (s.name === "vllm:num_requests_waiting") waiting = (waiting ?? 0) + s.value;
  }
  return running === undefined || waiting === undefined ? undefined : { running, waiting };
}

export function startEngineMetrics(o: EngineMetricsOptions): EngineMetrics {
  const intervalMs = o.intervalMs ?? DEFAULT_ENGINE_METRICS_INTERVAL_MS;
  const log = o.log ?? (() => {});
  const stats: EngineMetricsStats = { scrapes: 0, failures: 0 };
  const active = new Set(o.mode === "off" ? [] : o.instances.map((i) => i.id));
  const inFlight = new Map<string, Promise<void>>();
  const failing = new Set<string>();

  async function scrape(id: string, url: string): Promise<void> {
    const tMs = o.clock.nowMs();
    let problem: string | undefined;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(intervalMs) });
      const text = await res.text();
      const counts = res.ok ? engineCountsOf(text) : undefined;
      if (counts) {
        stats.scrapes++;
        if (failing.delete(id)) log(`engine metrics of ${id}: read again at ${url}`);
        o.onCounts(id, tMs, counts);
        return;
      }
      problem = res.ok ? "no vllm:num_requests_running/waiting gauges" : `HTTP ${res.status}`;
      // Not a vLLM (a 404, or a /metrics without the gauges): auto leaves it; a 5xx may be a server starting.
      if (o.mode === "auto" && (res.ok || res.status === 404)) {
        active.delete(id);
        log(`engine metrics of ${id}: ${url} answers with ${problem}; not scraping it (--engine-metrics auto)`);
        return;
      }
    } catch (err) {
      problem = errorMessage(err);
    }
    stats.failures++;
    if (!failing.has(id)) log(`engine metrics of ${id}: cannot read ${url}: ${problem}`);
    failing.add(id);
  }

  const tick = () => {
    for (const inst of o.instances) {
      if (!active.has(inst.id) || inFlight.has(inst.id)) continue;
      const p = scrape(inst.id, engineMetricsUrl(inst.upstream)).finally(() => inFlight.delete(inst.id));
      inFlight.set(inst.id, p);
    }
  };
  const timer = active.size > 0 ? setInterval(tick, intervalMs) : undefined;
  timer?.unref();
  if (timer) tick();
  let stopped: Promise<void> | undefined;
  return {
    stats: () => ({ ...stats }),
    stop() {
      stopped ??= (async () => {
        if (timer) clearInterval(timer);
        active.clear();
        await Promise.all(inFlight.values());
      })();
      return stopped;
    },
  };
}
