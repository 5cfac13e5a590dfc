/**
 * The energy math, pure and shared: a GPU's energy over a window from its counter or its power
 * samples (window-energy.ts), a window's energy split among the requests that worked in it
 * (attribution.ts), and power read from a counter's slope (counter-power.ts). The agent, the
 * analyzer and the fleet emulator's ground truth all use these; none has its own copy.
 */
export * from "./attribution.ts";
export * from "./window-energy.ts";
export * from "./counter-power.ts";
