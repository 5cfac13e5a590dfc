import { createSimNode, type WorkloadRequest } from "../../simnode/mod.ts";
import {
  DEFAULT_GUARD, DEFAULT_POLICY, createObserver, decide, freshGuard, freshMemory, guardHoldsAtPeriod, guardMove, nextPatience, priorClock,
  type GuardConfig, type PolicyConfig, type Profile,
} from "../../governor/mod.ts";
import type { RequestEvent } from "../../../shared/mod.ts";
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
  /** Time-weighted mean of the period's clock and of the clock in force, MHz. */
  meanBaseMhz: number;
  meanClockMhz: number;
}

export function replayGoverned(w: readonly WorkloadRequest[], o: GovernedReplayOptions): GovernedReplay {
  const untilMs = replayUntilMs(o);
  const node = createSimNode({ model: o.model, gpus: o.gpus, tp: o.gpus, smClockMhz: o.maxMhz });
  const key = "sim/i0";
  const observer = createObserver(o.slo);
  const cfg: PolicyConfig = { ...DEFAULT_POLICY, attainmentTarget: 0.99, guarded: o.guard !== false, ...o.policy, supportedMhz: o.supportedMhz, ...o.slo };
  const guardCfg = o.guard === false ? undefined : { ...DEFAULT_GUARD, ...o.guard };
  const everyMs = o.guardEveryMs ?? 100;
  const ev = (requestId: string, tMs: number) => ({ v: 1 as const, kind: "request" as const, msgId: `${requestId}:${tMs}`, node: "sim", instance: "i0", requestId, tMs });
  const reqs = new Map<number, { id: string; arrivalMs: number; firstMs: number; endMs: number; outputTokens: number }>();
  const emit = (e: RequestEvent) => observer.onRequestEvent(e);
  node.onStep((_inst, step) => {
    for (const s of step.emitted) if (s.generated === 1) {
      const r = reqs.get(s.req.tag as number)!;
      r.firstMs = step.endMs;
      emit({ ...ev(r.id, step.endMs), event: "first_token" });
    }
    for (const s of step.finished) {
      const r = reqs.get(s.req.tag as number)!;
      r.endMs = step.endMs;
      emit({ ...ev(r.id, step.endMs), event: "end", status: "ok", promptTokens: s.req.promptTokens, outputTokens: r.outputTokens });
    }
  });
  let memory = freshMemory();
  let guard = freshGuard();
  let base = o.maxMhz, clock = o.maxMhz, boosts = 0, baseAcc = 0, clockAcc = 0;
  let next = everyMs, nextPeriod = o.periodMs;
  const set = (f: number, at: number) => {
    if (f !== clock) node.setKnobs({ smClockMhz: f }, at);
    clock = f;
  };
  const advance = (to: number) => {
    for (; next <= to; next += everyMs) {
      node.advanceTo(next);
      if (next >= nextPeriod) {
        nextPeriod += o.periodMs;
        const inFlight = node.instances.reduce((a, i) => a + i.engine.running + i.engine.waiting, 0);
        observer.onWork({ v: 1, kind: "work", msgId: `w${next}`, node: "sim", instance: "i0", gpus: [0], windowStartMs: next - o.periodMs, windowEndMs: next, requests: [], inFlight });
        const obs = observer.take(key);
        const prior = o.profile ? priorClock(o.profile, o.model, o.gpus, obs.mix, o.slo) : undefined;
        const d = decide(cfg, base, obs, memory, prior?.mhz);
        memory = d.memory;
        base = d.toMhz;
        if (guardCfg) {
          guard.patience = nextPatience(guardCfg, guard.patience, obs);
          guard = { ...guard, boosted: guardHoldsAtPeriod(guard, observer.waiting(key), base, o.maxMhz) };
        }
        set(guard.boosted ? o.maxMhz : base, next);
      } else if (guardCfg) {
        const move = guardMove(guard, observer.waiting(key), base, o.maxMhz);
        if (move) {
          guard = { ...guard, boosted: move.boosted };
          if (move.boosted) boosts++;
          set(move.toMhz, next);
        }
      }
      baseAcc += base * everyMs;
      clockAcc += clock * everyMs;
    }
    node.advanceTo(to);
  };
  for (const [i, q] of w.entries()) {
    advance(q.arrivalMs);
    const id = q.id ?? `r${i}`;
    reqs.set(i, { id, arrivalMs: q.arrivalMs, firstMs: Number.NaN, endMs: Number.NaN, outputTokens: q.outputTokens });
    emit({ ...ev(id, q.arrivalMs), event: "start", endpoint: "completions", stream: true });
    node.submit({ id, promptTokens: q.promptTokens, outputTokens: q.outputTokens, tag: i }, q.arrivalMs);
  }
  advance(untilMs);
  let energyMj = 0;
  for (let g = 0; g < node.gpuCount; g++) energyMj += node.energyMj(g, untilMs);
  const missed = new Set<string>();
  for (const r of reqs.values()) {
    if (!metSlo({ endMs: r.endMs, ttftMs: r.firstMs - r.arrivalMs, outputTokens: r.outputTokens, meanItlMs: (r.endMs - r.firstMs) / (r.outputTokens - 1) }, o.slo, untilMs)) missed.add(r.id);
  }
  const spanMs = next - everyMs;
  return { energyKwh: energyMj / 3.6e9, missed, boosts, meanBaseMhz: baseAcc / spanMs, meanClockMhz: clockAcc / spanMs };
}
