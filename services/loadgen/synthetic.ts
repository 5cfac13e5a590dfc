import { ConfigError } from "../../shared/errors.ts";
import { CLASSES, INPUT_RANGES, OUTPUT_RANGES, parseClass, type Length, type WorkloadClass } from "../../shared/workload-classes.ts";
import { createRng, type Rng } from "../../shared/rng.ts";
import type { Workload, WorkloadRequest } from "./workload.ts";

export type Arrival = "poisson" | "gamma" | "constant";

export interface SyntheticOptions {
  /**
   * A class (`long-short`, `medium` = `medium-medium`), `mix` (the nine classes equally), or a
   * weighted mix `short-short:3,long-long:1`.
   */
  cls: string;
  /** Requests per second, or a linear ramp from → to over the duration. */
  rate: number | { from: number; to: number };
  durationS: number;
  arrival?: Arrival;
  /** Coefficient of variation of gamma inter-arrival times (1 = Poisson; > 1 bursty). */
  cv?: number;
  /** Token lengths drawn uniformly from the class's range, or fixed at its middle. */
  lengths?: "uniform" | "fixed";
  seed?: number;
}

/**
 * Synthetic requests of the paper's classes. Arrivals are a renewal process in "operational time"
 * mapped through the integrated rate Λ(t) (time rescaling), so a ramp keeps the arrival law and
 * changes only the rate: the expected count in [0, T] is ∫ rate dt.
 */
export async function* syntheticWorkload(o: SyntheticOptions): AsyncGenerator<WorkloadRequest> {
  const mix = parseMix(o.cls);
  const arrival = o.arrival ?? "poisson";
  const { from, to } = typeof o.rate === "number" ? { from: o.rate, to: o.rate } : o.rate;
  if (!(from >= 0 && to >= 0 && from + to > 0)) throw new ConfigError("--rate", `rate must be ≥ 0 and not all zero, got ${from}→${to}`);
  if (!(o.durationS > 0)) throw new ConfigError("--duration", `duration must be > 0 s, got ${o.durationS}`);
  const cv = o.cv ?? 1;
  if (arrival === "gamma" && !(cv > 0)) throw new ConfigError("--cv", `cv must be > 0, got ${cv}`);
  const rng = createRng(o.seed ?? 1);
  const lengthsRng = createRng((o.seed ?? 1) ^ 0x1234567);
  const T = o.durationS;
  // Λ(t) = from·t + (to − from)·t²/(2T); its inverse, for s ≥ 0:
  const k = (to - from) / (2 * T);
  const tOf = (s: number) => (Math.abs(k) < 1e-12 ? s / from : (-from + Math.sqrt(Math.max(0, from * from + 4 * k * s))) / (2 * k));
  const total = from * T + k * T * T;
  let s = arrival === "constant" ? 0 : step(rng, arrival, cv);
  let index = 0;
  while (s < total) {
    const tS = tOf(s);
    if (!(tS < T)) break;
    const cls = pick(mix, rng);
    yield { index: index++, offsetMs: tS * 1000, ...lengthsOf(cls, lengthsRng, o.lengths ?? "uniform"), workloadClass: cls };
    s += step(rng, arrival, cv);
  }
}

/** Poisson arrivals of one class at a fixed rate (the demo's default workload). */
export function poissonWorkload(o: { rate: number; durationS: number; cls: string; seed?: number }): Workload {
  return syntheticWorkload({ cls: o.cls, rate: o.rate, durationS: o.durationS, arrival: "poisson", seed: o.seed ?? 1 });
}

function step(rng: Rng, arrival: Arrival, cv: number): number {
  if (arrival === "constant") return 1;
  if (arrival === "poisson") return rng.exp();
  return rng.gamma(1 / (cv * cv));
}

function lengthsOf(cls: WorkloadClass, rng: Rng, mode: "uniform" | "fixed"): { promptTokens: number; outputTokens: number } {
  const [i, o] = cls.split("-") as [Length, Length];
  const draw = (r: readonly [number, number]) => (mode === "fixed" ? Math.round((r[0] + r[1]) / 2) : rng.int(r[0], r[1]));
  return { promptTokens: draw(INPUT_RANGES[i]), outputTokens: draw(OUTPUT_RANGES[o]) };
}

type Mix = { cls: WorkloadClass; cum: number }[];

export function parseMix(spec: string): Mix {
  const parts = spec.trim().toLowerCase() === "mix" ? CLASSES.map((c) => `${c}:1`) : spec.split(",");
  const out: Mix = [];
  let cum = 0;
  for (const p of parts) {
    const [name = "", w = "1"] = p.split(":");
    const cls = parseClass(name);
    const weight = Number(w);
    if (!cls) throw new ConfigError("--workload", `unknown class ${JSON.stringify(name)}: use (short|medium|long)-(short|medium|long), mix, or CLASS:WEIGHT,…`);
    if (!(weight > 0)) throw new ConfigError("--workload", `weight of ${cls} must be > 0, got ${JSON.stringify(w)}`);
    cum += weight;
    out.push({ cls, cum });
  }
  return out.map((m) => ({ cls: m.cls, cum: m.cum / cum }));
}

function pick(mix: Mix, rng: Rng): WorkloadClass {
  if (mix.length === 1) return mix[0]!.cls;
  const u = rng.next();
  return (mix.find((m) => u < m.cum) ?? mix[mix.length - 1]!).cls;
}
