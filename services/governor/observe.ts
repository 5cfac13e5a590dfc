import type { RequestEnergy, RequestEvent, WorkWindow } from "../../shared/mod.ts";
import { classify } from "../../shared/workload-classes.ts";
import type { Observation } from "./policy.ts";

/**
 * What the governor sees of each instance between two control periods, built from the live streams:
 * - REQUESTS (the agent's tap): start → first token → end gives each request's TTFT and TPOT on
 *   the server side, which every request has (LOAD only exists for load-generator runs);
 * - WORK: requests in flight at each window's end (the queue);
 * - ENERGY (the analyzer): energy per request, summed per period into J per output token.
 * And, at any moment, how many of an instance's requests wait for their first token (the burst
 * guard's signal): started, no first token yet, and started less than STALE_WAIT_SLOS TTFT SLOs
 * before the instance's latest event (a request whose end event was lost must not hold it up).
 * `take(key)` returns the period's observation and starts the next. Pure: times come from the
 * messages, nothing reads a clock.
 */
export interface SloTargets {
  ttftSloMs: number;
  tpotSloMs: number;
}

export interface PeriodStats extends Observation {
  /** Workload-class shares of the period's finished requests. */
  mix: Record<string, number>;
}

interface Open {
  startMs: number;
  firstMs?: number;
}

interface Period {
  ttft: number[];
  tpot: number[];
  met: number;
  judged: number;
  classes: Record<string, number>;
  energyMj: number;
  energyTokens: number;
}

const emptyPeriod = (): Period => ({ ttft: [], tpot: [], met: 0, judged: 0, classes: {}, energyMj: 0, energyTokens: 0 });

/** Most open requests kept per instance: a tap that lost its end events must not grow memory without bound. */
const MAX_OPEN = 50_000;
/** Finished requests an instance's windowed attainment is judged over (across periods). */
export const ATTAINMENT_WINDOW = 200;
/** A request waiting for its first token longer than this many TTFT SLOs no longer counts as waiting (lost, or long past saving). */
export const STALE_WAIT_SLOS = 10;

export const instanceKey = (node: string, instance: string) => `${node}/${instance}`;

export interface Observer {
  onRequestEvent(e: RequestEvent): void;
  onWork(w: WorkWindow): void;
  onEnergy(e: RequestEnergy): void;
  /** Requests of the instance waiting for their first token now. */
  waiting(key: string): number;
  /** The period's observation for an instance; the next period starts empty (in-flight carries over). */
  take(key: string): PeriodStats;
  /** Instances seen on any stream. */
  keys(): string[];
}

export function createObserver(slo: SloTargets): Observer {
  const open = new Map<string, Map<string, Open>>();
  const periods = new Map<string, Period>();
  const inFlight = new Map<string, { now?: number; before?: number; atMs: number }>();
  /** Per instance: requests waiting for their first token (id → start, oldest start first), and the latest event time seen. */
  const waits = new Map<string, { reqs: Map<string, number>; latestMs: number }>();
  const waitsOf = (key: string) => {
    let w = waits.get(key);
    if (!w) waits.set(key, (w = { reqs: new Map(), latestMs: 0 }));
    return w;
  };
  const staleMs = STALE_WAIT_SLOS * slo.ttftSloMs;
  /** The last ATTAINMENT_WINDOW outcomes per instance (1 met, 0 missed), as a ring. */
  const recent = new Map<string, { met: Uint8Array; n: number; next: number }>();
  const remember = (key: string, met: boolean) => {
    let r = recent.get(key);
    if (!r) recent.set(key, (r = { met: new Uint8Array(ATTAINMENT_WINDOW), n: 0, next: 0 }));
    r.met[r.next] = met ? 1 : 0;
    r.next = (r.next + 1) % ATTAINMENT_WINDOW;
    r.n = Math.min(ATTAINMENT_WINDOW, r.n + 1);
  };
  const period = (key: string) => {
    let p = periods.get(key);
    if (!p) periods.set(key, (p = emptyPeriod()));
    return p;
  };
  const opened = (key: string) => {
    let m = open.get(key);
    if (!m) open.set(key, (m = new Map()));
    return m;
  };
  return {
    onRequestEvent(e) {
      const key = instanceKey(e.node, e.instance);
      const reqs = opened(key);
      period(key);
      const w = waitsOf(key);
      if (e.tMs > w.latestMs) w.latestMs = e.tMs;
      if (e.event === "start") {
        if (reqs.size >= MAX_OPEN) {
          const oldest = reqs.keys().next().value!;
          reqs.delete(oldest);
          w.reqs.delete(oldest);
        }
        reqs.set(e.requestId, { startMs: e.tMs });
        // A repeated start counts once, at its newest time.
        w.reqs.delete(e.requestId);
        w.reqs.set(e.requestId, e.tMs);
      } else if (e.event === "first_token") {
        const r = reqs.get(e.requestId);
        if (r && r.firstMs === undefined) r.firstMs = e.tMs;
        w.reqs.delete(e.requestId);
      } else {
        const r = reqs.get(e.requestId);
        w.reqs.delete(e.requestId);
        reqs.delete(e.requestId);
        if (!r || e.status !== "ok" || r.firstMs === undefined) return;
        const p = period(key);
        const ttft = r.firstMs - r.startMs;
        const tpot = e.outputTokens > 1 ? (e.tMs - r.firstMs) / (e.outputTokens - 1) : 0;
        p.ttft.push(ttft);
        p.tpot.push(tpot);
        p.judged++;
        const met = ttft <= slo.ttftSloMs && tpot <= slo.tpotSloMs;
        if (met) p.met++;
        remember(key, met);
        const cls = classify(e.promptTokens, e.outputTokens);
        p.classes[cls] = (p.classes[cls] ?? 0) + 1;
      }
    },
    onWork(w) {
      if (w.inFlight === undefined) return;
      const key = instanceKey(w.node, w.instance);
      period(key);
      const s = inFlight.get(key);
      // Windows can arrive out of order: keep the latest.
      if (!s) inFlight.set(key, { now: w.inFlight, atMs: w.windowEndMs });
      else if (w.windowEndMs >= s.atMs) {
        s.now = w.inFlight;
        s.atMs = w.windowEndMs;
      }
    },
    onEnergy(e) {
      if (e.status !== "ok") return;
      const p = period(instanceKey(e.node, e.instance));
      p.energyMj += e.energyMj;
      p.energyTokens += e.outputTokens;
    },
    waiting(key) {
      const w = waits.get(key);
      if (!w) return 0;
      // Oldest first: stale ones go until the first fresh one.
      for (const [id, startMs] of w.reqs) {
        if (w.latestMs - startMs <= staleMs) break;
        w.reqs.delete(id);
      }
      return w.reqs.size;
    },
    take(key) {
      const p = periods.get(key) ?? emptyPeriod();
      periods.set(key, emptyPeriod());
      const q = inFlight.get(key);
      const before = q?.before;
      if (q) q.before = q.now;
      const total = Object.values(p.classes).reduce((a, b) => a + b, 0);
      const r = recent.get(key);
      return {
        ...(r && r.n > 0 ? { windowAttainment: r.met.reduce((a, b) => a + b, 0) / r.n, windowRequests: r.n } : {}),
        requests: p.judged,
        ...(p.judged > 0 ? { attainment: p.met / p.judged, ttftP90Ms: p90(p.ttft), tpotP90Ms: p90(p.tpot) } : {}),
        ...(q?.now !== undefined ? { inFlight: q.now } : {}),
        ...(before !== undefined ? { inFlightBefore: before } : {}),
        ...(p.energyTokens > 0 ? { jPerOutputToken: p.energyMj / 1000 / p.energyTokens } : {}),
        mix: Object.fromEntries(Object.entries(p.classes).map(([c, n]) => [c, n / total])),
      };
    },
    keys: () => [...periods.keys()],
  };
}

function p90(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(0.9 * s.length))] ?? 0;
}
