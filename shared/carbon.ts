import { ConfigError } from "./errors.ts";

/**
 * A grid carbon-intensity series (gCO2 per kWh over time, such as a CAISO or Electricity Maps CSV
 * export) and the pure arithmetic that turns energy into emissions. A value holds from its time
 * until the next one; the last holds for one more median step; before the first there is none.
 */
export interface CarbonSeries {
  source: string;
  /** Ascending by time. */
  points: { tMs: number; gPerKwh: number }[];
}

const J_PER_KWH = 3.6e6;

/** g of CO2 for `energyJ` at `gPerKwh`. */
export const gco2Of = (energyJ: number, gPerKwh: number): number => (energyJ / J_PER_KWH) * gPerKwh;

function parseTime(s: string): number | undefined {
  const t = s.trim().replace(/^"|"$/g, "");
  if (/^\d+(\.\d+)?$/.test(t)) {
    const n = Number(t);
    return n < 1e11 ? n * 1000 : n; // epoch seconds or ms
  }
  const ms = Date.parse(t);
  return Number.isFinite(ms) ? ms : undefined;
}

/**
 * CSV with a header: the first column is the time (ISO 8601 or epoch s/ms); the intensity is the
 * column whose name mentions co2, carbon or intensity (else the second). Units from its name:
 * g/kWh and kg/MWh are the same number; lbs/MWh (CAISO's emission-rate reports) is converted.
 */
export function parseCarbonCsv(text: string, source = "carbon CSV"): CarbonSeries {
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/).filter((l) => l.trim() !== "");
  const header = (lines[0] ?? "").split(",").map((h) => h.trim().replace(/^"|"$/g, "").toLowerCase());
  let col = header.findIndex((h, i) => i > 0 && /co2|carbon|intensity/.test(h));
  if (col < 0) col = 1;
  const factor = /lb/.test(header[col] ?? "") ? 0.45359237 : 1;
  const points: CarbonSeries["points"] = [];
  for (const [i, line] of lines.slice(1).entries()) {
    const cells = line.split(",");
    const tMs = parseTime(cells[0] ?? "");
    const v = Number((cells[col] ?? "").trim().replace(/^"|"$/g, ""));
    if (tMs === undefined || !Number.isFinite(v) || v < 0) throw new ConfigError(source, `line ${i + 2}: expected time,gCO2/kWh, got ${JSON.stringify(line.slice(0, 80))}`);
    points.push({ tMs, gPerKwh: v * factor });
  }
  if (points.length === 0) throw new ConfigError(source, "no rows after the header");
  points.sort((a, b) => a.tMs - b.tMs);
  return { source, points };
}

/** Median step between points, ms (one hour for a single point). */
function medianStepMs(s: CarbonSeries): number {
  const d = s.points.slice(1).map((p, i) => p.tMs - s.points[i]!.tMs).sort((a, b) => a - b);
  return d[Math.floor(d.length / 2)] ?? 3600_000;
}

/** The intensity in force at `tMs`, gCO2/kWh, or undefined outside the series. */
export function intensityAt(s: CarbonSeries, tMs: number): number | undefined {
  const pts = s.points;
  if (pts.length === 0 || tMs < pts[0]!.tMs) return undefined;
  let lo = 0;
  let hi = pts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (pts[mid]!.tMs <= tMs) lo = mid;
    else hi = mid - 1;
  }
  if (lo === pts.length - 1 && tMs >= pts[lo]!.tMs + medianStepMs(s)) return undefined;
  return pts[lo]!.gPerKwh;
}
