import { gco2Of, intensityAt, type CarbonSeries } from "../../../shared/mod.ts";
import type { ArmEnergy } from "./measure.ts";

export type { CarbonSeries };

/**
 * An arm's emissions: its energy per time bucket (from InfluxDB) times the grid intensity at the
 * matching moment of the trace. The series is replayed with the trace, compressed alike: wall time
 * t of the arm is series time start + (t − t0) × speedup, so every arm sees the same hour of the
 * grid. Buckets past the series' end count at its last value (said in `note`).
 */
export function carbonOfArm(series: CarbonSeries, timeline: ArmEnergy["timeline"], t0Ms: number, speedup: number): { gco2: number } {
  const start = series.points[0]?.tMs ?? 0;
  const last = series.points.at(-1)?.gPerKwh ?? 0;
  let g = 0;
  for (const b of timeline) g += gco2Of(b.energyJ, intensityAt(series, start + Math.max(0, b.tMs - t0Ms) * speedup) ?? last);
  return { gco2: g };
}
