import test from "ava";
import fc from "fast-check";
import { decide, freshMemory, DEFAULT_POLICY, ENERGY_FORGET_PERIODS, type InstanceMemory, type Observation, type PolicyConfig } from "../services/governor/policy.ts";

const H100_CLOCKS = Array.from({ length: 110 }, (_, i) => 1980 - 15 * i); // 1980 → 345
const cfg: PolicyConfig = { ...DEFAULT_POLICY, supportedMhz: H100_CLOCKS, ttftSloMs: 500, tpotSloMs: 100 };

const obsArb: fc.Arbitrary<Observation> = fc.record(
  {
    requests: fc.nat(200),
    attainment: fc.double({ min: 0, max: 1, noNaN: true }),
    ttftP90Ms: fc.double({ min: 0, max: 2000, noNaN: true }),
    tpotP90Ms: fc.double({ min: 0, max: 400, noNaN: true }),
    inFlight: fc.nat(100),
    inFlightBefore: fc.nat(100),
    jPerOutputToken: fc.double({ min: 0.01, max: 5, noNaN: true }),
  },
  { requiredKeys: ["requests"] },
);
const memArb: fc.Arbitrary<InstanceMemory> = fc.record({
  queueGrew: fc.boolean(),
  healthyStreak: fc.nat(10),
  cooldownLeft: fc.nat(5),
  energyByMhz: fc
    .dictionary(fc.constantFrom(...H100_CLOCKS.slice(0, 70)).map(String), fc.record({ jPerOutputToken: fc.double({ min: 0.01, max: 5, noNaN: true }), periods: fc.integer({ min: 1, max: 20 }), lastPeriod: fc.constant(0) }))
    .map((d) => Object.fromEntries(Object.entries(d).map(([k, v]) => [Number(k), v]))),
});
const clockArb = fc.constantFrom(...H100_CLOCKS.filter((f) => f >= cfg.floorMhz));
const priorArb = fc.option(clockArb, { nil: undefined });
const isBreach = (o: Observation, m: InstanceMemory) =>
  (o.inFlight !== undefined && o.inFlightBefore !== undefined && o.inFlight > Math.max(cfg.queueMin, cfg.queueSurge * o.inFlightBefore)) ||
  (o.inFlight !== undefined && o.inFlightBefore !== undefined && m.queueGrew === true && o.inFlight > Math.max(cfg.queueMin, cfg.queueGrowth * o.inFlightBefore)) ||
  (o.requests >= cfg.minSamples && o.attainment !== undefined && o.attainment < cfg.attainmentTarget);

test("governor policy - the clock chosen is always a supported one within [floor, max]", (t) => {
  fc.assert(
    fc.property(clockArb, obsArb, memArb, priorArb, (cur, obs, mem, prior) => {
      const d = decide(cfg, cur, obs, mem, prior);
      return H100_CLOCKS.includes(d.toMhz) && d.toMhz >= cfg.floorMhz && d.toMhz <= 1980;
    }),
  );
  t.pass();
});

test("governor policy - a step down never exceeds the step limit", (t) => {
  fc.assert(fc.property(clockArb, obsArb, memArb, priorArb, (cur, obs, mem, prior) => cur - decide(cfg, cur, obs, mem, prior).toMhz <= cfg.maxStepDownMhz));
  t.pass();
});

test("governor policy - attainment below target (enough samples) or a growing queue returns to the maximum at once, and starts a cooldown", (t) => {
  fc.assert(
    fc.property(clockArb, obsArb, memArb, priorArb, (cur, obs, mem, prior) => {
      fc.pre(isBreach(obs, mem));
      const d = decide(cfg, cur, obs, mem, prior);
      return d.toMhz === 1980 && d.memory.cooldownLeft === cfg.cooldownPeriods && d.reason.length > 0;
    }),
  );
  t.pass();
});

test("governor policy - never lowers the clock with too few samples, inside the margin band, or during a cooldown", (t) => {
  fc.assert(
    fc.property(clockArb, obsArb, memArb, priorArb, (cur, obs, mem, prior) => {
      const d = decide(cfg, cur, obs, mem, prior);
      const use = Math.max((obs.ttftP90Ms ?? 0) / cfg.ttftSloMs, (obs.tpotP90Ms ?? 0) / cfg.tpotSloMs);
      const noDown = obs.requests < cfg.minSamples || use > 1 - cfg.margin || mem.cooldownLeft > 1;
      return !noDown || d.toMhz >= cur;
    }),
  );
  t.pass();
});

test("governor policy - hysteresis: a step down needs stablePeriods healthy periods in a row, and resets the streak", (t) => {
  const healthy: Observation = { requests: 100, attainment: 1, ttftP90Ms: 100, tpotP90Ms: 20, inFlight: 4, inFlightBefore: 4 };
  let mem = freshMemory();
  let cur = 1980;
  const path: number[] = [];
  for (let i = 0; i < 12; i++) {
    const d = decide(cfg, cur, healthy, mem);
    mem = d.memory;
    cur = d.toMhz;
    path.push(cur);
  }
  t.log(path.join(" → "));
  // Changes happen at most every stablePeriods periods, in steps ≤ maxStepDown, down to the floor.
  const changes = path.map((f, i) => (f !== (i === 0 ? 1980 : path[i - 1]) ? i : -1)).filter((i) => i >= 0);
  for (let k = 1; k < changes.length; k++) t.true(changes[k]! - changes[k - 1]! >= cfg.stablePeriods, `changes at periods ${changes.join(", ")}`);
  for (let i = 1; i < path.length; i++) t.true(path[i - 1]! - path[i]! <= cfg.maxStepDownMhz);
  t.is(path[0], 1980, "first healthy period holds");
  t.true(path[1]! < 1980, "second healthy period steps down");
  t.is(path.at(-1), cfg.floorMhz, "steady headroom walks down to the floor without a prior or energy data");
});

test("governor policy - heads for the prior and, without energy measured, stops there", (t) => {
  const healthy: Observation = { requests: 100, attainment: 1, ttftP90Ms: 100, tpotP90Ms: 20 };
  let mem = freshMemory();
  let cur = 1980;
  for (let i = 0; i < 20; i++) {
    const d = decide(cfg, cur, healthy, mem, 1410);
    mem = d.memory;
    cur = d.toMhz;
  }
  t.is(cur, 1410);
});

test("governor policy - measured energy per token that rises below a clock sends it back up; that clock is explored again only once its measurement is forgotten", (t) => {
  // Energy falls from 1980 to 1500 MHz, then rises: the policy must settle around 1500, not run to the floor.
  const jAt = (f: number) => 1 + Math.abs(f - 1500) / 1000;
  let mem = freshMemory();
  let cur = 1980;
  const path: number[] = [];
  for (let i = 0; i < 60; i++) {
    const d = decide(cfg, cur, { requests: 100, attainment: 1, ttftP90Ms: 100, tpotP90Ms: 20, jPerOutputToken: jAt(cur) }, mem);
    mem = d.memory;
    cur = d.toMhz;
    path.push(cur);
  }
  t.log(path.join(" "));
  const settled = path.slice(20);
  t.true(settled.every((f) => f >= 1150 && f <= 1700), `settles near the optimum: ${settled.join(" ")}`);
  // The worse clock below is visited again once its measurement is forgotten, for the 2 periods a comparison needs.
  const below = settled.filter((f) => f < 1300).length;
  t.true(below > 0 && below <= 2 * Math.ceil(settled.length / ENERGY_FORGET_PERIODS), `${below} of ${settled.length} periods below the optimum`);
});

test("governor policy - energy is compared only once measured for two periods at each clock: one noisy period does not send the clock up", (t) => {
  // Every period healthy; one period at 1785 MHz reads 30 % dearer than 1980 MHz did (a mix of long prompts), the next one 25 % cheaper.
  let mem = freshMemory();
  let cur = 1980;
  const jSeq = new Map<number, number[]>([[1980, [1, 1]], [1785, [1.3, 0.75]]]);
  const path: number[] = [];
  for (let i = 0; i < 5; i++) {
    const j = jSeq.get(cur)?.shift() ?? 0.9;
    const d = decide(cfg, cur, { requests: 100, attainment: 1, ttftP90Ms: 100, tpotP90Ms: 20, jPerOutputToken: j }, mem);
    mem = d.memory;
    cur = d.toMhz;
    path.push(cur);
  }
  t.false(path.slice(2).includes(1980), `not back to 1980 after one dear period: ${path.join(" ")}`);
});

test("governor policy - close to the SLO (not yet breached) steps up, at most one step", (t) => {
  fc.assert(
    fc.property(clockArb, memArb, fc.double({ min: 0.91, max: 1.5, noNaN: true }), (cur, mem, use) => {
      const d = decide(cfg, cur, { requests: 100, attainment: 1, ttftP90Ms: use * cfg.ttftSloMs, tpotP90Ms: 10 }, mem);
      return d.toMhz >= cur && d.toMhz - cur <= cfg.maxStepDownMhz;
    }),
  );
  t.pass();
});

test("governor policy - with a window of recent requests, one bad period does not send the clock to max; the window or a severe drop does", (t) => {
  const healthy = { ttftP90Ms: 100, tpotP90Ms: 20 }; // 20 % of each SLO: headroom
  const mem = { ...freshMemory(), healthyStreak: 5 };
  // A period of 20 requests with one miss (95 %) below the 99 % target, the last 200 at 99.5 %: no breach.
  const mild = decide(cfg, 1500, { requests: 20, attainment: 0.95, windowAttainment: 0.995, windowRequests: 200, ...healthy }, mem);
  t.not(mild.action, "max", mild.reason);
  // Without a window the same period is a breach (judged alone, as before).
  t.is(decide(cfg, 1500, { requests: 20, attainment: 0.95, ...healthy }, mem).action, "max");
  // The window itself below target: a breach.
  const win = decide(cfg, 1500, { requests: 20, attainment: 1, windowAttainment: 0.98, windowRequests: 200, ...healthy }, mem);
  t.is(win.action, "max");
  t.regex(win.reason, /over the last 200 requests/);
  // A period more than severeDrop below target: a breach, whatever the window says.
  const severe = decide(cfg, 1500, { requests: 20, attainment: 0.85, windowAttainment: 0.995, windowRequests: 200, ...healthy }, mem);
  t.is(severe.action, "max");
  t.regex(severe.reason, /this period/);
});

test("governor policy - a queue that jumps once holds the clock; one that grows two periods in a row, or surges, returns it to max", (t) => {
  const healthy = { requests: 30, attainment: 1, ttftP90Ms: 100, tpotP90Ms: 20 };
  const jump = decide(cfg, 1500, { ...healthy, inFlight: 19, inFlightBefore: 12 }, freshMemory());
  t.not(jump.action, "max", jump.reason);
  t.true(jump.memory.queueGrew);
  const again = decide(cfg, jump.toMhz, { ...healthy, inFlight: 30, inFlightBefore: 19 }, jump.memory);
  t.is(again.action, "max");
  t.regex(again.reason, /two periods in a row/);
  const surge = decide(cfg, 1500, { ...healthy, inFlight: 40, inFlightBefore: 0 }, freshMemory());
  t.is(surge.action, "max");
  t.regex(surge.reason, /surged/);
});

test("governor policy - where the maximum clock itself keeps fewer requests within the SLO than the target, the target becomes what it keeps less the slack", (t) => {
  const c: PolicyConfig = { ...cfg, attainmentTarget: 0.97, minSamples: 10 };
  const obs = (attainment: number): Observation => ({ requests: 20, attainment, windowAttainment: attainment, windowRequests: 200, ttftP90Ms: 100, tpotP90Ms: 20 });
  let mem = freshMemory();
  let cur = 1980;
  const actions: string[] = [];
  for (let i = 0; i < 12; i++) {
    const d = decide(c, cur, obs(0.94), mem);
    mem = d.memory;
    cur = d.toMhz;
    actions.push(d.action);
  }
  // Judged at the maximum from its second period on: 100 requests after 6 such periods; then the target is 93 %.
  t.true(actions.slice(0, 5).every((a) => a === "hold"), `at the maximum, below target, while too little is known: ${actions.join(" ")}`);
  t.true(cur < 1980, `with 94 % kept at the maximum, a clock below it is tried: ${actions.join(" ")}`);
  const d = decide(c, cur, obs(0.925), mem);
  t.is(d.toMhz, 1980, "below what the maximum keeps less the slack: back to the maximum");
  t.regex(d.reason, /maximum clock keeps 94\.0%/);
  // A maximum that keeps the target changes nothing: below target is a breach at once.
  const fresh = decide(c, 1785, obs(0.96), freshMemory());
  t.is(fresh.action, "max");
});

test("governor policy - guarded (the burst guard answers queues): queues are not breaches, a low window is one only while the period misses too, few samples or the margin band do not hold the clock up", (t) => {
  const g: PolicyConfig = { ...cfg, guarded: true, stablePeriods: 1 };
  const healthy = { requests: 30, attainment: 1, ttftP90Ms: 100, tpotP90Ms: 20 };
  // A surge or a queue growing two periods in a row: the guard's to answer, not the period's.
  t.not(decide(g, 1500, { ...healthy, inFlight: 40, inFlightBefore: 0 }, freshMemory()).action, "max");
  const grew = decide(g, 1500, { ...healthy, inFlight: 19, inFlightBefore: 12 }, freshMemory());
  t.not(decide(g, grew.toMhz, { ...healthy, inFlight: 30, inFlightBefore: 19 }, grew.memory).action, "max");
  // The window below target while this period met it (a burst the guard already answered): no breach; with the period missing too: a breach.
  t.not(decide(g, 1500, { ...healthy, windowAttainment: 0.9, windowRequests: 200 }, freshMemory()).action, "max");
  const both = decide(g, 1500, { ...healthy, attainment: 0.95, windowAttainment: 0.9, windowRequests: 200 }, freshMemory());
  t.is(both.action, "max");
  t.regex(both.reason, /over the last 200 requests/);
  // Too few requests to judge, or latencies inside the margin band: a step down all the same.
  t.is(decide(g, 1500, { requests: 2, attainment: 1, ttftP90Ms: 100, tpotP90Ms: 20 }, freshMemory()).action, "down");
  t.is(decide(g, 1500, { ...healthy, ttftP90Ms: cfg.ttftSloMs * (1 - cfg.margin * 0.6) }, freshMemory()).action, "down");
  // Unguarded, the same inputs hold or return to the maximum (the tests above).
  t.is(decide({ ...g, guarded: false }, 1500, { requests: 2, attainment: 1 }, freshMemory()).action, "hold");
});
