/**
 * The governor's policy: for one inference instance and one control period, the SM clock to run at
 * next and why. Least energy per request subject to the SLO, with guard rails:
 * - a breach (SLO attainment below target, or the queue growing) returns to the maximum clock at
 *   once, and no step down follows for `cooldownPeriods`;
 * - steps down are at most `maxStepDownMhz`, never below `floorMhz`, and need `stablePeriods`
 *   healthy periods in a row (hysteresis); latencies inside the margin band hold the clock;
 * - too few requests in the period to judge attainment: hold;
 * - energy measured online per clock overrides the prior: a clock whose measured energy per output
 *   token is worse than the next higher one's is not gone below, and is left upward.
 * Pure: no I/O, no clock reads; the caller keeps `InstanceMemory` between periods.
 */

export interface PolicyConfig {
  /** Supported SM clocks of the instance's GPUs, MHz (any order). */
  supportedMhz: readonly number[];
  /** Lowest clock the policy may choose, MHz. */
  floorMhz: number;
  /** Largest step down in one period, MHz. */
  maxStepDownMhz: number;
  /** Step below the prior's clock when measured energy allows exploring, MHz. */
  exploreStepMhz: number;
  /** SLO: p90 time to first token and time per output token, ms. */
  ttftSloMs: number;
  tpotSloMs: number;
  /** Share of requests that must meet both SLOs (e.g. 0.99). */
  attainmentTarget: number;
  /**
   * With a window of recent requests (`Observation.windowAttainment`): a period this far below the
   * target is a breach on its own; milder dips are judged over the window. A period of ~20 requests
   * at 98 % attainment misses one or more a third of the time: judged alone, each of those sent the
   * clock back to the maximum.
   */
  severeDrop: number;
  /** Fewest finished requests in a period to judge it; fewer: hold. */
  minSamples: number;
  /** A step down needs p90 latencies at most (1 − margin) of their SLO; above (1 − margin/2) steps up. */
  margin: number;
  /** Healthy periods in a row before each step down. */
  stablePeriods: number;
  /** Periods after a breach with no step down. */
  cooldownPeriods: number;
  /**
   * The queue "grows" when in-flight requests exceed max(queueMin, queueGrowth × the previous
   * period's) two periods in a row, or exceed max(queueMin, queueSurge × it) in one. Bursty traffic
   * jumps by half in one period often (in the evaluation, all 10 of the governor's returns to the
   * maximum were such jumps on instances meeting the SLO for every request); an overload keeps growing.
   */
  queueGrowth: number;
  queueSurge: number;
  queueMin: number;
  /**
   * Where the maximum clock itself keeps fewer requests within the SLO than the target (measured at
   * the maximum over at least `reachableMinRequests` requests), the target is what the maximum
   * keeps less `reachableSlack`: no clock meets the target there, and holding the maximum for ever
   * buys nothing. In the evaluation the code pool keeps 94 % at the maximum against a 97 % target.
   */
  reachableSlack: number;
  reachableMinRequests: number;
  /**
   * The burst guard (burst-guard.ts) protects the instance between periods, so: a queue is the
   * guard's to answer (at once, not a period later); the window's attainment is a breach only
   * while this period's own requests miss too (a burst the guard already answered at the maximum
   * leaves the window low for many periods after it); periods with too few requests to judge, or
   * latencies inside the margin band, do not hold the clock up. On the evaluation's replay
   * (library mode), each of these kept the code pool's clock at the maximum for minutes.
   */
  guarded?: boolean;
}

export const DEFAULT_POLICY: Omit<PolicyConfig, "supportedMhz" | "ttftSloMs" | "tpotSloMs"> = {
  floorMhz: 1005,
  maxStepDownMhz: 400,
  exploreStepMhz: 100,
  attainmentTarget: 0.99,
  severeDrop: 0.1,
  minSamples: 20,
  margin: 0.2,
  stablePeriods: 2,
  cooldownPeriods: 3,
  queueGrowth: 1.5,
  queueSurge: 3,
  queueMin: 8,
  reachableSlack: 0.01,
  reachableMinRequests: 100,
};

/** What was measured on the instance over the last control period. */
export interface Observation {
  /** Requests that finished in the period with known TTFT/TPOT. */
  requests: number;
  /** Share of them that met both SLOs (undefined without requests). */
  attainment?: number;
  /** The same over the instance's last finished requests (a sliding window across periods), and how many. */
  windowAttainment?: number;
  windowRequests?: number;
  ttftP90Ms?: number;
  tpotP90Ms?: number;
  /** Requests in flight (running or queued) at the period's end, and at the previous period's end. */
  inFlight?: number;
  inFlightBefore?: number;
  /** Energy per output token measured by the pipeline (ENERGY) for requests of the period, J. */
  jPerOutputToken?: number;
}

export interface ClockEnergy {
  jPerOutputToken: number;
  periods: number;
  lastPeriod: number;
}

/** What the policy remembers of an instance between periods. */
export interface InstanceMemory {
  healthyStreak: number;
  cooldownLeft: number;
  /** Measured energy by clock: J per output token (averaged), over how many periods, the last of them (see ENERGY_MIN_PERIODS, ENERGY_FORGET_PERIODS). */
  energyByMhz: Record<number, ClockEnergy>;
  /** Periods decided so far. */
  period?: number;
  /** Periods in a row at the maximum clock, and requests met / judged in such periods (decayed sums). */
  maxStreak?: number;
  maxMet?: number;
  maxJudged?: number;
  /** The queue grew in the last period (see `queueGrowth`). */
  queueGrew?: boolean;
}

export const freshMemory = (): InstanceMemory => ({ healthyStreak: 0, cooldownLeft: 0, energyByMhz: {} });

export type Action = "hold" | "down" | "up" | "max";

export interface Decision {
  fromMhz: number;
  toMhz: number;
  action: Action;
  reason: string;
  memory: InstanceMemory;
}

/** Weight of the newest period in the per-clock energy average. */
const ENERGY_EWMA = 0.3;
/**
 * A lower clock must be at least this much cheaper per token to be worth staying at. J per output
 * token of one period moves with the period's mix (a 2,000-token prompt with 20 output tokens costs
 * far more per output token than a chat turn) and load (idle power over fewer tokens): at 2 % the
 * evaluation's conversation instances went back up on such noise (10 of 11 moves up) and never came
 * down again; at 5 % they still held 33 times and went up 8 times where every lower clock was
 * cheaper. Between neighbouring clocks near the optimum a real GPU differs by a few per cent, which
 * the prior (the lab's sweep) knows better than a few periods of traffic: measured energy overrides
 * it only where it is clearly wrong.
 */
const ENERGY_TOLERANCE = 0.1;
/** Weight kept per period of what the maximum clock was measured to keep within the SLO. */
const MAX_ATTAINMENT_DECAY = 0.97;
/** Periods measured at a clock before its energy is compared with another's (a step down waits `stablePeriods`, 2 by default, at each clock). */
const ENERGY_MIN_PERIODS = 2;
/**
 * A clock's energy measured longer ago than this is forgotten, and a clock once found worse is
 * explored again: J per output token moves with load (idle power spread over fewer tokens) and mix,
 * so only measurements close in time compare. At 30 periods, a conversation instance in the
 * evaluation stayed at 1,785 MHz for 150 s after a peak on what it had measured before it.
 */
export const ENERGY_FORGET_PERIODS = 8;

const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

/**
 * The decision for one period. `currentMhz`: the clock in force; `priorMhz`: the prior's choice for
 * the instance's workload mix (the lab's profile), where the policy heads first.
 */
export function decide(cfg: PolicyConfig, currentMhz: number, obs: Observation, memory: InstanceMemory, priorMhz?: number): Decision {
  const clocks = [...new Set(cfg.supportedMhz)].sort((a, b) => b - a);
  const maxMhz = clocks[0] ?? currentMhz;
  const allowed = clocks.filter((f) => f >= cfg.floorMhz);
  const period = (memory.period ?? 0) + 1;
  const mem: InstanceMemory = { healthyStreak: memory.healthyStreak, cooldownLeft: Math.max(0, memory.cooldownLeft - 1), energyByMhz: {}, period };
  // What is remembered of energy: measurements of the last ENERGY_FORGET_PERIODS periods.
  for (const [f, e] of Object.entries(memory.energyByMhz)) if (period - e.lastPeriod <= ENERGY_FORGET_PERIODS) mem.energyByMhz[Number(f)] = e;
  if (obs.jPerOutputToken !== undefined && obs.requests > 0) {
    const old = mem.energyByMhz[currentMhz];
    const periods = (old?.periods ?? 0) + 1;
    // A plain mean of the first periods (an average weighted 70/30 at the second one lets the first rule), then the moving average.
    const w = Math.max(ENERGY_EWMA, 1 / periods);
    const j = old === undefined ? obs.jPerOutputToken : (1 - w) * old.jPerOutputToken + w * obs.jPerOutputToken;
    mem.energyByMhz[currentMhz] = { jPerOutputToken: j, periods, lastPeriod: period };
  }
  // What the maximum clock keeps within the SLO: periods that ran at the maximum after one there already (their requests ran at it).
  mem.maxStreak = currentMhz === maxMhz ? (memory.maxStreak ?? 0) + 1 : 0;
  mem.maxMet = memory.maxMet ?? 0;
  mem.maxJudged = memory.maxJudged ?? 0;
  if (mem.maxStreak >= 2 && obs.requests > 0 && obs.attainment !== undefined) {
    mem.maxMet = MAX_ATTAINMENT_DECAY * mem.maxMet + obs.attainment * obs.requests;
    mem.maxJudged = MAX_ATTAINMENT_DECAY * mem.maxJudged + obs.requests;
  }
  const atMax = mem.maxJudged >= cfg.reachableMinRequests ? mem.maxMet / mem.maxJudged : undefined;
  const goal = atMax !== undefined && atMax < cfg.attainmentTarget ? atMax - cfg.reachableSlack : cfg.attainmentTarget;
  const goalText = goal === cfg.attainmentTarget ? `target ${pct(goal)}` : `target ${pct(goal)} (the maximum clock keeps ${pct(atMax!)} < ${pct(cfg.attainmentTarget)})`;
  /** The clock's energy if measured often enough to be compared. */
  const energyAt = (f: number) => {
    const e = mem.energyByMhz[f];
    return e && e.periods >= ENERGY_MIN_PERIODS ? e.jPerOutputToken : undefined;
  };
  const out = (toMhz: number, action: Action, reason: string): Decision => ({ fromMhz: currentMhz, toMhz, action: toMhz === currentMhz ? "hold" : action, reason, memory: mem });
  const toMax = (reason: string): Decision => {
    mem.healthyStreak = 0;
    mem.cooldownLeft = cfg.cooldownPeriods;
    return out(maxMhz, "max", reason);
  };

  // 1. Breaches: back to the maximum at once.
  const queue = obs.inFlight ?? 0;
  const known = obs.inFlight !== undefined && obs.inFlightBefore !== undefined;
  const queueLimit = Math.max(cfg.queueMin, cfg.queueGrowth * (obs.inFlightBefore ?? Infinity));
  const surgeLimit = Math.max(cfg.queueMin, cfg.queueSurge * (obs.inFlightBefore ?? Infinity));
  const grew = known && queue > queueLimit;
  const grewBefore = memory.queueGrew === true;
  mem.queueGrew = grew;
  if (known && queue > surgeLimit && !cfg.guarded) return toMax(`queue surged from ${obs.inFlightBefore} to ${queue} in flight (limit ${surgeLimit.toFixed(0)})`);
  if (grew && grewBefore && !cfg.guarded) return toMax(`queue grew two periods in a row, from ${obs.inFlightBefore} to ${queue} in flight (limit ${queueLimit.toFixed(0)})`);
  if (obs.windowAttainment !== undefined && obs.windowRequests !== undefined) {
    const periodMisses = obs.attainment !== undefined && obs.attainment < goal;
    if (obs.windowRequests >= cfg.minSamples && obs.windowAttainment < goal && (!cfg.guarded || periodMisses)) return toMax(`SLO attainment ${pct(obs.windowAttainment)} < ${goalText} over the last ${obs.windowRequests} requests`);
    if (obs.requests >= cfg.minSamples && obs.attainment !== undefined && obs.attainment < goal - cfg.severeDrop) return toMax(`SLO attainment ${pct(obs.attainment)} this period, more than ${pct(cfg.severeDrop)} below ${goalText}`);
  } else if (obs.requests >= cfg.minSamples && obs.attainment !== undefined && obs.attainment < goal) return toMax(`SLO attainment ${pct(obs.attainment)} < ${goalText} over ${obs.requests} requests`);
  if (currentMhz > maxMhz || currentMhz < cfg.floorMhz) return toMax(`clock ${currentMhz} MHz outside [${cfg.floorMhz}, ${maxMhz}]`);

  // 2. Too little to judge: hold.
  if (obs.requests < cfg.minSamples && !cfg.guarded) {
    mem.healthyStreak = 0;
    return out(currentMhz, "hold", `${obs.requests} requests < ${cfg.minSamples} needed to judge attainment`);
  }

  const ttftUse = (obs.ttftP90Ms ?? 0) / cfg.ttftSloMs;
  const tpotUse = (obs.tpotP90Ms ?? 0) / cfg.tpotSloMs;
  const use = Math.max(ttftUse, tpotUse);
  const lat = `p90 TTFT ${pct(ttftUse)} / TPOT ${pct(tpotUse)} of SLO, attainment ${pct(obs.attainment ?? 1)}`;
  const above = allowed.filter((f) => f > currentMhz).at(-1);

  // 3. Close to the SLO: one step up (not a breach yet).
  if (use > 1 - cfg.margin / 2) {
    mem.healthyStreak = 0;
    return above !== undefined ? out(stepUp(allowed, currentMhz, cfg.maxStepDownMhz), "up", `${lat}: above ${pct(1 - cfg.margin / 2)}, stepping up`) : out(currentMhz, "hold", `${lat}: at the maximum`);
  }

  // 4. Measured energy says this clock is past the optimum: go back up one step.
  const here = energyAt(currentMhz);
  // The nearest higher clock with a measurement (steps down may have skipped clocks in between).
  const measuredAbove = allowed.filter((f) => f > currentMhz && energyAt(f) !== undefined).at(-1);
  const upE = measuredAbove !== undefined ? energyAt(measuredAbove) : undefined;
  if (here !== undefined && upE !== undefined && here > upE * (1 + ENERGY_TOLERANCE)) {
    mem.healthyStreak = 0;
    return out(measuredAbove!, "up", `measured ${here.toFixed(3)} J/token at ${currentMhz} MHz > ${upE.toFixed(3)} at ${measuredAbove} MHz: below the energy optimum`);
  }

  // 5. Inside the margin band: hold (hysteresis).
  if (use > 1 - cfg.margin && !cfg.guarded) {
    mem.healthyStreak = 0;
    return out(currentMhz, "hold", `${lat}: inside the ${pct(cfg.margin)} margin band`);
  }

  // 6. Headroom: step down after enough healthy periods, toward the prior, then exploring.
  mem.healthyStreak += 1;
  if (mem.cooldownLeft > 0) return out(currentMhz, "hold", `${lat}: headroom, but ${mem.cooldownLeft} cooldown period(s) left after a breach`);
  if (mem.healthyStreak < cfg.stablePeriods) return out(currentMhz, "hold", `${lat}: headroom for ${mem.healthyStreak}/${cfg.stablePeriods} periods`);
  const below = allowed.filter((f) => f < currentMhz && currentMhz - f <= cfg.maxStepDownMhz);
  if (below.length === 0) return out(currentMhz, "hold", `${lat}: at the floor ${cfg.floorMhz} MHz`);
  let target: number;
  let why: string;
  if (priorMhz !== undefined && priorMhz < currentMhz) {
    // Head for the prior, no further than one step allows.
    const t = below.filter((f) => f >= priorMhz).at(-1);
    if (t === undefined) return out(currentMhz, "hold", `${lat}: within one clock step of the prior's ${priorMhz} MHz`);
    target = t;
    why = `toward the prior's ${priorMhz} MHz`;
  } else if (priorMhz !== undefined && here === undefined) {
    return out(currentMhz, "hold", `${lat}: at the prior's ${priorMhz} MHz; no energy measured here to explore below it`);
  } else {
    // No prior: a full step down; at the prior with energy measured: a smaller exploring step.
    target = priorMhz === undefined ? below.at(-1)! : (below.filter((f) => currentMhz - f <= cfg.exploreStepMhz).at(-1) ?? below[0]!);
    why = priorMhz === undefined ? "no prior: exploring a lower clock" : `below the prior's ${priorMhz} MHz: exploring, energy measured`;
  }
  const targetE = energyAt(target);
  if (here !== undefined && targetE !== undefined && targetE > here * (1 - ENERGY_TOLERANCE)) return out(currentMhz, "hold", `${lat}: ${target} MHz measured no cheaper (${targetE.toFixed(3)} vs ${here.toFixed(3)} J/token)`);
  mem.healthyStreak = 0;
  return out(target, "down", `${lat}: headroom for ${cfg.stablePeriods} periods, ${why}`);
}

/** The supported clock at most `stepMhz` above `currentMhz` (the highest such), within `allowed` (descending). */
function stepUp(allowed: readonly number[], currentMhz: number, stepMhz: number): number {
  const ups = allowed.filter((f) => f > currentMhz && f - currentMhz <= stepMhz);
  return ups[0] ?? allowed.filter((f) => f > currentMhz).at(-1) ?? currentMhz;
}
