/** The energy governor: public names (what apps and tests compose; everything else is internal). */
export { startGovernor, type Governor, type GovernorOptions, type GovernorStats } from "./governor.ts";
export { decide, freshMemory, DEFAULT_POLICY, type PolicyConfig, type Observation, type Decision, type InstanceMemory, type ClockEnergy } from "./policy.ts";
export { createObserver, type Observer, type PeriodStats } from "./observe.ts";
export { loadProfile, priorClock, type Profile } from "./profile.ts";
export { governCommand } from "./command.ts";
export { createDecisionSink, decisionLine, type DecisionSink, type DecisionSinkOptions } from "./decision-points.ts";
export { DEFAULT_GUARD, freshGuard, guardMove, guardHoldsAtPeriod, nextPatience, type GuardConfig, type GuardState, type GuardMove } from "./burst-guard.ts";
