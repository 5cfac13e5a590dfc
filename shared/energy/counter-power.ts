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

/**
 * Watches an energy counter for standing still while the GPU draws power: a counter stuck at one
 * value (some vGPU/MIG setups answer SUCCESS with a frozen one), or one served by an exporter that
 * refreshes slower than it is sampled (dcgm-exporter's `-c`, 30 s by default). Either way its deltas
 * are wrong (0 J, then a jump into the wrong window), and the source leaves the counter out for
 * good and integrates power instead. It has stood still once it kept one value for `minMs` while
 * power says at least `minMj` went by.
 */
export class StandingCounter {
  #value: number | undefined;
  #sinceMs = 0;
  #lastMs = 0;
  #mj = 0;
  #stood = false;

  constructor(readonly minMs: number, readonly minMj: number) {}

  /** Takes one reading (counter and power at `tMs`); true from the reading at which the counter has stood still. */
  next(tMs: number, energyMj: number, powerMw: number): boolean {
    if (this.#stood) return true;
    if (energyMj !== this.#value) {
      this.#value = energyMj;
      this.#sinceMs = this.#lastMs = tMs;
      this.#mj = 0;
      return false;
    }
    this.#mj += (powerMw * Math.max(0, tMs - this.#lastMs)) / 1000;
    this.#lastMs = tMs;
    this.#stood = tMs - this.#sinceMs >= this.minMs && this.#mj >= this.minMj;
    return this.#stood;
  }
}
