import test from "ava";
import fc from "fast-check";
import type { PowerBatch, RequestEvent, WorkWindow } from "../shared/mod.ts";
import { createWindowJoin, type JoinOutput } from "../services/analyzer/join.ts";

type Msg = { kind: "power"; v: PowerBatch } | { kind: "work"; v: WorkWindow } | { kind: "req"; v: RequestEvent };

/** Synthetic traffic of one node: 2 instances × 2 GPUs + 1 unassigned GPU, counter-based power. */
function traffic(seed: number, windows: number): Msg[] {
  let s = seed >>> 0;
  const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  const msgs: Msg[] = [];
  const counters = [0, 0, 0, 0, 0].map(() => 1000 * rnd());
  const active: { id: string; inst: string; left: number; started: boolean }[] = [];
  let next = 0;
  for (let w = 0; w < windows; w++) {
    const start = 10_000 + w * 1000;
    const startCounters = [...counters];
    const gpus = counters.map((_, g) => {
      const tMs: number[] = [];
      const energyMj: number[] = [];
      const powerMw: number[] = [];
      for (let i = 0; i < 10; i++) {
        const p = 100_000 + 500_000 * rnd();
        counters[g]! += (p * 100) / 1e6;
        tMs.push(start + i * 100 + 1);
        energyMj.push(counters[g]!);
        powerMw.push(p);
      }
      return { gpu: g, uuid: `GPU-${g}`, tMs, powerMw, energyMj, energyStartMj: startCounters[g]!, startTMs: start - 99 };
    });
    msgs.push({ kind: "power", v: { v: 1, kind: "power", msgId: `p${w}`, node: "n1", seq: w, windowStartMs: start, windowEndMs: start + 1000, source: "fake", gpus, instances: ["a", "b"] } });
    if (rnd() < 0.7 && w < windows - 2) {
      const id = `r${next++}`;
      const inst = rnd() < 0.5 ? "a" : "b";
      active.push({ id, inst, left: 1 + Math.floor(rnd() * 4), started: false });
      msgs.push({ kind: "req", v: { v: 1, kind: "request", msgId: `${id}:s`, node: "n1", instance: inst, requestId: id, tMs: start + 5, event: "start", endpoint: "completions", stream: true } });
    }
    for (const inst of ["a", "b"]) {
      const reqs = active.filter((r) => r.inst === inst).map((r) => {
        const item = { requestId: r.id, prefillTokens: r.started ? 0 : 100 + Math.floor(rnd() * 900), decodeTokens: Math.floor(rnd() * 30) };
        r.started = true;
        return item;
      });
      msgs.push({ kind: "work", v: { v: 1, kind: "work", msgId: `w${w}${inst}`, node: "n1", instance: inst, gpus: inst === "a" ? [0, 1] : [2, 3], windowStartMs: start, windowEndMs: start + 1000, requests: reqs } });
    }
    for (const r of [...active]) {
      if (--r.left <= 0) {
        active.splice(active.indexOf(r), 1);
        msgs.push({ kind: "req", v: { v: 1, kind: "request", msgId: `${r.id}:e`, node: "n1", instance: r.inst, requestId: r.id, tMs: start + 900, event: "end", status: "ok", promptTokens: 1, outputTokens: 1 } });
      }
    }
  }
  return msgs;
}

function run(msgs: Msg[]) {
  const join = createWindowJoin<number>({ allowedLatenessMs: 1_000_000 });
  const outs: JoinOutput<number>[] = [];
  msgs.forEach((m, i) => {
    if (m.kind === "power") join.addPower(m.v, i);
    else if (m.kind === "work") join.addWork(m.v, i);
    else join.addRequest(m.v, i);
    outs.push(join.drain());
  });
  outs.push(join.flush());
  const requests = outs.flatMap((o) => o.requests).sort((a, b) => (a.requestId < b.requestId ? -1 : 1));
  const nodeWindows = outs.flatMap((o) => o.nodeWindows);
  const acked = new Set(outs.flatMap((o) => o.ackable));
  return { requests, nodeWindows, acked };
}

const close = (a: number, b: number) => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(a), Math.abs(b));

test("join - conservation per window: attributed + idle = measured", (t) => {
  const { nodeWindows } = run(traffic(7, 40));
  t.is(nodeWindows.length, 40);
  for (const w of nodeWindows) t.true(close(w.attributedMj + w.idleMj, w.measuredMj), `window ${w.windowStartMs}`);
});

test("join - Σ request energy = Σ attributed energy", (t) => {
  const { nodeWindows, requests } = run(traffic(11, 40));
  const attributed = nodeWindows.reduce((s, w) => s + w.attributedMj, 0);
  t.true(requests.length > 5);
  t.true(close(requests.reduce((s, r) => s + r.energyMj, 0), attributed));
  t.true(requests.every((r) => r.energyMj >= 0 && !r.incomplete));
});

test("join - order independence: shuffled and duplicated messages give the same per-request energy", (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 1e6 }), fc.array(fc.nat(), { minLength: 200, maxLength: 200 }), (seed, perm) => {
      const msgs = traffic(seed, 25);
      const reference = run(msgs);
      const shuffled = [...msgs, ...msgs.filter((_, i) => perm[i % perm.length]! % 3 === 0)];
      for (let i = shuffled.length - 1; i > 0; i--) {
        const j = perm[i % perm.length]! % (i + 1);
        [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
      }
      const got = run(shuffled);
      if (got.requests.length !== reference.requests.length) return false;
      return got.requests.every((r, i) => r.requestId === reference.requests[i]!.requestId && close(r.energyMj, reference.requests[i]!.energyMj));
    }),
    { numRuns: 30 },
  );
  t.pass();
});

test("join - every input is acknowledged once its results are out", (t) => {
  const msgs = traffic(3, 30);
  const { acked } = run(msgs);
  t.is(acked.size, msgs.length);
});

test("join - a window missing its WORK closes incomplete after the allowed lateness", (t) => {
  const msgs = traffic(5, 12).filter((m) => !(m.kind === "work" && m.v.windowStartMs === 13_000 && m.v.instance === "a"));
  const join = createWindowJoin<number>({ allowedLatenessMs: 2000 });
  const windows = [];
  for (const [i, m] of msgs.entries()) {
    if (m.kind === "power") join.addPower(m.v, i);
    else if (m.kind === "work") join.addWork(m.v, i);
    else join.addRequest(m.v, i);
    windows.push(...join.drain().nodeWindows);
  }
  const w = windows.find((x) => x.windowStartMs === 13_000);
  t.truthy(w);
  t.true(w!.incomplete);
  t.true(close(w!.attributedMj + w!.idleMj, w!.measuredMj));
});

test("join - closed windows stay listed only as far back as they can matter: a day-long run keeps the list bounded", (t) => {
  const join = createWindowJoin<number>({ allowedLatenessMs: 2_000, maxRequestIdleMs: 60_000 });
  const windows = 6 * 3600; // 6 hours of 1-s windows, one node, one instance
  let acked = 0;
  let maxListed = 0;
  for (let w = 0; w < windows; w++) {
    const start = 1_700_000_000_000 + w * 1000;
    join.addPower({ v: 1, kind: "power", msgId: `p${w}`, node: "n1", seq: w, windowStartMs: start, windowEndMs: start + 1000, source: "fake", gpus: [{ gpu: 0, uuid: "GPU-0", tMs: [start + 500], powerMw: [100_000], energyMj: [w * 100 + 100], energyStartMj: w * 100, startTMs: start - 500 }], instances: ["a"] }, 2 * w);
    join.addWork({ v: 1, kind: "work", msgId: `w${w}`, node: "n1", instance: "a", gpus: [0], windowStartMs: start, windowEndMs: start + 1000, requests: [] }, 2 * w + 1);
    if (w % 100 === 0) {
      acked += join.drain().ackable.length;
      maxListed = Math.max(maxListed, join.stats().closedListed);
    }
  }
  acked += join.drain().ackable.length;
  t.is(acked, 2 * windows, "every input acknowledged");
  // Kept: idle limit + stream skew + lateness ≈ 662 s of windows; pruned at twice that.
  t.true(maxListed <= 2 * 662 + 100, `closed windows listed at most ${maxListed}`);
  // A message for a window long gone is late, not a new window.
  const late = join.stats().late;
  join.addWork({ v: 1, kind: "work", msgId: "old", node: "n1", instance: "a", gpus: [0], windowStartMs: 1_700_000_000_000 + 5 * 1000, windowEndMs: 1_700_000_000_000 + 6 * 1000, requests: [] }, -1);
  t.is(join.stats().late, late + 1);
  t.deepEqual(join.drain().ackable, [-1]);
  t.is(join.stats().openWindows, 0);
});
