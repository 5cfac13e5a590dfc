/**
 * The burst guard: between control periods, an instance's clock goes to the maximum the moment more
 * of its requests wait for their first token than it may let wait below the maximum (its
 * patience), and back to the period's clock once none waits. The control period (seconds) is too
 * slow for bursts: on the governor evaluation's code pool a burst of long prompts queues behind
 * prefills within a second, and a clock that follows it one period late keeps fewer requests within
 * the SLO than a high static clock does (`npm run bench -- governor-bound`, reactive). Reacting to
 * each request event instead (the agent's tap publishes every 50 ms) lets the period's clock sit
 * low between bursts.
 *
 * Patience: 0 at first (any waiting request boosts); it grows by one per period in which every one
 * of the instance's last finished requests met the SLO, up to `maxPatience`, and falls back to 0
 * once their attainment drops below `resetBelow`. An instance that keeps its SLO at the low clock
 * even while requests queue (decode-heavy chat: the conversation pool) stops boosting for short
 * queues, where boosting buys nothing; one whose queues cost it requests (prefill-heavy: code)
 * boosts for any.
 * Pure: no I/O, no clock reads; the governor keeps `GuardState` per instance.
 */
export interface GuardConfig {
  /** Most requests the guard ever lets wait for their first token below the maximum clock. */
  maxPatience: number;
  /** Attainment over the instance's last finished requests below which patience falls to 0. */
  resetBelow: number;
  /** Fewest finished requests in that window before patience changes. */
  minSamples: number;
}

export const DEFAULT_GUARD: GuardConfig = { maxPatience: 8, resetBelow: 0.995, minSamples: 20 };

export interface GuardState {
  /** Requests that may wait for their first token before the clock goes to the maximum. */
  patience: number;
  /** The clock is at the maximum for the guard (until no request waits). */
  boosted: boolean;
}

export const freshGuard = (): GuardState => ({ patience: 0, boosted: false });

/** Once a control period: the patience after it, from the instance's window of finished requests. */
export function nextPatience(cfg: GuardConfig, patience: number, obs: { windowAttainment?: number; windowRequests?: number }): number {
  if (obs.windowAttainment === undefined || (obs.windowRequests ?? 0) < cfg.minSamples) return patience;
  if (obs.windowAttainment < cfg.resetBelow) return 0;
  return obs.windowAttainment >= 1 ? Math.min(cfg.maxPatience, patience + 1) : patience;
}

export interface GuardMove {
  boosted: boolean;
  toMhz: number;
  reason: string;
}

/**
 * On a change of the waiting count: where the guard moves the clock, or undefined (no move).
 * `baseMhz`: the control period's clock; at the maximum there is nothing to boost.
 */
export function guardMove(state: GuardState, waiting: number, baseMhz: number, maxMhz: number): GuardMove | undefined {
  if (!state.boosted && waiting > state.patience && baseMhz < maxMhz) {
    return { boosted: true, toMhz: maxMhz, reason: `burst guard: ${waiting} request(s) waiting for their first token > ${state.patience} allowed at ${baseMhz} MHz` };
  }
  if (state.boosted && waiting === 0) return { boosted: false, toMhz: baseMhz, reason: `burst guard: no request waiting for its first token; back to the period's ${baseMhz} MHz` };
  return undefined;
}

/**
 * At a control period, with the period's clock `baseMhz` just chosen: whether the guard holds the
 * maximum over it (boosted: until no request waits; otherwise: more waiting than its patience).
 */
export const guardHoldsAtPeriod = (state: GuardState, waiting: number, baseMhz: number, maxMhz: number): boolean =>
  baseMhz < maxMhz && (state.boosted ? waiting > 0 : waiting > state.patience);
