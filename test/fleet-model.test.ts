import test from "ava";
import { createNodeModel, IDLE_W, MAX_GPU_W, type NodeWindow } from "../services/fleet/node-model.ts";
import { encode, energyMjOf, powerBatch, requestEvent, workWindow } from "../shared/mod.ts";

/** The emulated node alone: pure, deterministic, and consistent with itself. */
const T0 = Date.UTC(2025, 0, 1);

function run(seed: number, windows: number, opts: { rate?: number } = {}): NodeWindow[] {
  const m = createNodeModel({ node: "emu-1", seed, ratePerInstanceS: opts.rate ?? 3 });
  return Array.from({ length: windows }, (_, i) => m.step(T0 + i * 1000, { abortAll: i === windows - 1 }));
}

test("fleet model - the same seed gives the same bytes, another seed other traffic", (t) => {
  const bytes = (ws: NodeWindow[]) => Buffer.concat(ws.flatMap((w) => [w.power, ...w.work, ...w.events].map((m) => Buffer.from(encode(m)))));
  t.true(bytes(run(4, 10)).equals(bytes(run(4, 10))));
  t.false(bytes(run(4, 10)).equals(bytes(run(5, 10))));
});

test("fleet model - every message satisfies the contract the analyzer validates", (t) => {
  for (const w of run(2, 20)) {
    t.true(powerBatch.safeParse(w.power).success);
    for (const x of w.work) t.true(workWindow.safeParse(x).success);
    for (const e of w.events) t.true(requestEvent.safeParse(e).success, JSON.stringify(e));
  }
});

test("fleet model - 10 samples per GPU per window, and the counter advances by the reported power", (t) => {
  const windows = run(3, 10);
  for (const w of windows) {
    t.is(w.power.gpus.length, 8);
    t.deepEqual(w.power.instances, ["i0", "i1"]);
    for (const g of w.power.gpus) {
      t.is(g.tMs.length, 10);
      t.deepEqual(g.tMs, Array.from({ length: 10 }, (_, k) => w.power.windowStartMs + 100 * k));
      const e = [g.energyStartMj!, ...g.energyMj!];
      const ts = [g.startTMs!, ...g.tMs];
      for (let k = 1; k < e.length; k++) {
        if (ts[k - 1] === ts[k]) continue; // the very first sample opens the counter
        // Integer-mJ counter: the delta is the interval's power × time, give or take the rounding.
        t.true(Math.abs(e[k]! - e[k - 1]! - energyMjOf(g.powerMw[k - 1]!, 100)) <= 1.5, `gpu ${g.gpu} sample ${k}`);
      }
      for (const p of g.powerMw) t.true(p >= (IDLE_W / 2) * 1000 && p <= MAX_GPU_W * 1000);
    }
  }
});

test("fleet model - a request's prefill lies in its arrival window and its decode tokens sum to its output", (t) => {
  const windows = run(7, 30);
  const tokens = new Map<string, { p: number; d: number; firstWindow: number }>();
  for (const w of windows) {
    for (const x of w.work) {
      for (const r of x.requests) {
        const a = tokens.get(r.requestId) ?? { p: 0, d: 0, firstWindow: w.power.windowStartMs };
        a.p += r.prefillTokens;
        a.d += r.decodeTokens;
        tokens.set(r.requestId, a);
      }
    }
  }
  const events = windows.flatMap((w) => w.events.map((e) => ({ e, w })));
  const starts = events.filter((x) => x.e.event === "start");
  const ends = events.filter((x) => x.e.event === "end");
  t.true(starts.length > 100);
  t.is(ends.length, starts.length);
  for (const { e, w } of events) t.true(e.tMs >= w.power.windowStartMs && e.tMs < w.power.windowEndMs, "event outside its window");
  for (const { e } of starts) {
    const a = tokens.get(e.requestId)!;
    t.is(a.firstWindow, Math.floor(e.tMs / 1000) * 1000);
  }
  for (const { e } of ends) {
    if (e.event !== "end") continue;
    const a = tokens.get(e.requestId)!;
    t.is(a.p, e.promptTokens);
    t.is(a.d, e.outputTokens);
  }
  t.true(ends.some(({ e }) => e.event === "end" && e.status === "aborted"), "nothing in flight at the end");
});

test("fleet model - an idle node draws idle power and publishes empty WORK windows", (t) => {
  for (const w of run(1, 5, { rate: 0 })) {
    t.is(w.events.length, 0);
    for (const x of w.work) t.deepEqual(x.requests, []);
    for (const g of w.power.gpus) for (const p of g.powerMw) t.true(Math.abs(p - IDLE_W * 1000) < 15_000);
  }
});
