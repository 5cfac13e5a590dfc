/**
 * Power from a cumulative energy counter, for a GPU whose driver or exporter gives the counter but
 * no power reading: the counter's slope over the trailing `spanMs` (from the newest reading at least
 * that old, or the oldest there is), which is what NVML's 1-s power average reports where it exists.
 * A counter that updates in steps (every 20–100 ms on an H100) makes a shorter span jumpy, so the
 * span is a second by default.
 */
export class CounterPower {
  #trail: { tMs: number; energyMj: number }[] = [];
  #lastMw: number | undefined;

  constructor(readonly spanMs = 1000) {}

  /**
   * Takes one counter reading; returns power in mW, or undefined while there is no span yet (the
   * first reading). A counter that goes down (driver reload) starts the span over, and the power
   * before it is held until time has passed since.
   */
  next(tMs: number, energyMj: number): number | undefined {
    const trail = this.#trail;
    if (trail.length > 0 && energyMj < trail[trail.length - 1]!.energyMj) trail.length = 0;
    trail.push({ tMs, energyMj });
    while (trail.length > 2 && tMs - trail[1]!.tMs >= this.spanMs) trail.shift();
    const from = trail[0]!;
    if (tMs > from.tMs) this.#lastMw = Math.round(((energyMj - from.energyMj) / (tMs - from.tMs)) * 1000); // mJ/ms = W
    return this.#lastMw;
  }
}
