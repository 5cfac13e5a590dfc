import { createSimNode, type SimNode, type WorkloadRequest } from "../../simnode/mod.ts";
import {
  DEFAULT_GUARD, DEFAULT_POLICY, createObserver, decide, freshGuard, freshMemory, guardHoldsAtPeriod, guardMove, nextPatience, priorClock,
  type GuardConfig, type PolicyConfig, type Profile,
} from "../../governor/mod.ts";
import { metSlo, replayUntilMs, type ReplaySim } from "./static-replay.ts";

/**
 * One node's requests replayed under the governor's own policy and burst guard, in simulated time
 * (library mode: seconds for an hour): the governor's observer is fed the request events the
 * agent's tap would publish (start, first token, end) and the in-flight count of each control
 * period, and its decisions set the node's clock at once. What it leaves out of the live
 * evaluation: NATS, the tap's 50 ms publishing and clock control's round trip (the guard here
 * looks every `guardEveryMs`), and the analyzer's energy per request (the policy runs on its prior
 * alone, with no measured J/token). So it is a quick, repeatable view of the policy, not the
 * evaluation's figure (`joulestream govern-eval` measures through the pipeline).
 */
export interface GovernedReplayOptions extends ReplaySim {
  maxMhz: number;
  supportedMhz: readonly number[];
  periodMs: number;
  policy?: Partial<Omit<PolicyConfig, "supportedMhz" | "ttftSloMs" | "tpotSloMs">>;
  /** false: the period's clock only. */
  guard?: false | Partial<GuardConfig>;
  guardEveryMs?: number;
  profile?: Profile;
}

export interface GovernedReplay {
  energyKwh: number;
  missed: Set<string>;
  /** The guard's moves to the maximum. */
  boosts: number;
  /** Mean of the period's clock and of the clock in force over the replay, MHz. */
  meanBaseMhz: number;
  meanClockMhz: number;
}

/** What a controller of `replaySteered` is told of a request, as the agent's tap would tell it. */
export interface SteerHooks {
  /** Every `everyMs` of simulated time, the node advanced to `nowMs` and running at `clockMhz`: the clock to run at from now. */
  control(nowMs: number, node: SimNode, clockMhz: number): number;
  submitted?(id: string, tMs: number): void;
  firstToken?(id: string, tMs: number): void;
  ended?(id: string, tMs: number, promptTokens: number, outputTokens: number): void;
}

/**
 * One node's requests replayed in simulated time with a controller that looks every `everyMs` and
 * sets the clock (request i tagged i, ids as the workload gives them): the node's energy over the
 * arm, the requests that missed the SLO (unfinished ones included), and the time-weighted clock.
 */
export function replaySteered(w: readonly WorkloadRequest[], o: ReplaySim & { startMhz: number; everyMs: number }, hooks: SteerHooks): { energyKwh: number; missed: Set<string>; meanClockMhz: number } {
  const untilMs = replayUntilMs(o);
  const node = createSimNode({ model: o.model, gpus: o.gpus, tp: o.gpus, smClockMhz: o.startMhz });
  const reqs = w.map((q, i) => ({ id: q.id ?? `r${i}`, arrivalMs: q.arrivalMs, firstMs: Number.NaN, endMs: Number.NaN, outputTokens: q.outputTokens }));
  node.onStep((_inst, step) => {
    for (const s of step.emitted) if (s.generated === 1) {
      const r = reqs[s.req.tag as number]!;
      r.firstMs = step.endMs;
      hooks.firstToken?.(r.id, step.endMs);
    }
    for (const s of step.finished) {
      const r = reqs[s.req.tag as number]!;
      r.endMs = step.endMs;
      hooks.ended?.(r.id, step.endMs, s.req.promptTokens, r.outputTokens);
    }
  });
  let clock = o.startMhz, clockAcc = 0, next = o.everyMs;
  const advance = (to: number) => {
    for (; next <= to; next += o.everyMs) {
      node.advanceTo(next);
      const f = hooks.control(next, node, clock);
      if (f !== clock) node.setKnobs({ smClockMhz: f }, next);
      clock = f;
      clockAcc += clock * o.everyMs;
    }
    node.advanceTo(to);
  };
  for (const [i, q] of w.entries()) {
    advance(q.arrivalMs);
    const r = reqs[i]!;
    hooks.submitted?.(r.id, q.arrivalMs);
    node.submit({ id: r.id, promptTokens: q.promptTokens, outputTokens: q.outputTokens, tag: i }, q.arrivalMs);
  }
  advance(untilMs);
  let energyMj = 0;
  for (let g = 0; g < node.gpuCount; g++) energyMj += node.energyMj(g, untilMs);
  const missed = new Set<string>();
  for (const r of reqs) {
    if (!metSlo({ endMs: r.endMs, ttftMs: r.firstMs - r.arrivalMs, outputTokens: r.outputTokens, meanItlMs: (r.endMs - r.firstMs) / (r.outputTokens - 1) }, o.slo, untilMs)) missed.add(r.id);
  }
  return { energyKwh: energyMj / 3.6e9, missed, meanClockMhz: clockAcc / (next - o.everyMs) };
}

export function replayGoverned(w: readonly WorkloadRequest[], o: GovernedReplayOptions): GovernedReplay {
  const key = "sim/i0";
  const observer = createObserver(o.slo);
  const cfg: PolicyConfig = { ...DEFAULT_POLICY, attainmentTarget: 0.99, guarded: o.guard !== false, ...o.policy, supportedMhz: o.supportedMhz, ...o.slo };
  const guardCfg = o.guard === false ? undefined : { ...DEFAULT_GUARD, ...o.guard };
  const everyMs = o.guardEveryMs ?? 100;
  const ev = (requestId: string, tMs: number) => ({ v: 1 as const, kind: "request" as const, msgId: `${requestId}:${tMs}`, node: "sim", instance: "i0", requestId, tMs });
  let memory = freshMemory();
  let guard = freshGuard();
  let base = o.maxMhz, boosts = 0, baseSum = 0, ticks = 0, nextPeriod = o.periodMs;
  /** The clock the governor wants at `nowMs`: the period's decision at each period's end, the guard's moves between. */
  const want = (nowMs: number, node: SimNode, clock: number): number => {
    if (nowMs >= nextPeriod) {
      nextPeriod += o.periodMs;
      const inFlight = node.instances.reduce((a, i) => a + i.engine.running + i.engine.waiting, 0);
      observer.onWork({ v: 1, kind: "work", msgId: `w${nowMs}`, node: "sim", instance: "i0", gpus: [0], windowStartMs: nowMs - o.periodMs, windowEndMs: nowMs, requests: [], inFlight });
      const obs = observer.take(key);
      const prior = o.profile ? priorClock(o.profile, o.model, o.gpus, obs.mix, o.slo) : undefined;
      const d = decide(cfg, base, obs, memory, prior?.mhz);
      memory = d.memory;
      base = d.toMhz;
      if (guardCfg) {
        const patience = nextPatience(guardCfg, guard.patience, obs);
        guard = { patience, boosted: guardHoldsAtPeriod({ ...guard, patience }, observer.waiting(key), base, o.maxMhz) };
      }
      return guard.boosted ? o.maxMhz : base;
    }
    const move = guardCfg ? guardMove(guard, observer.waiting(key), base, o.maxMhz) : undefined;
    if (!move) return clock;
    guard = { ...guard, boosted: move.boosted };
    if (move.boosted) boosts++;
    return move.toMhz;
  };
  const r = replaySteered(w, { ...o, startMhz: o.maxMhz, everyMs }, {
    control(nowMs, node, clock) {
      const f = want(nowMs, node, clock);
      baseSum += base;
      ticks++;
      return f;
    },
    submitted: (id, tMs) => observer.onRequestEvent({ ...ev(id, tMs), event: "start", endpoint: "completions", stream: true }),
    firstToken: (id, tMs) => observer.onRequestEvent({ ...ev(id, tMs), event: "first_token" }),
    ended: (id, tMs, promptTokens, outputTokens) => observer.onRequestEvent({ ...ev(id, tMs), event: "end", status: "ok", promptTokens, outputTokens }),
  });
  return { energyKwh: r.energyKwh, missed: r.missed, boosts, meanBaseMhz: baseSum / ticks, meanClockMhz: r.meanClockMhz };
}
