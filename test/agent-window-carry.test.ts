import test from "ava";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createSampler } from "../services/agent/sampler.ts";
import type { PowerSource } from "../services/agent/power-source.ts";
import { carryVerdict, createWindowCarryFile, type CarriedWindow } from "../services/agent/window-carry.ts";
import { powerBatch, type PowerBatch } from "../shared/mod.ts";

/**
 * One "machine": a settable clock and two GPUs at a constant 300 W whose counter integrates
 * exactly, shared by the runs of the sampler that follow one another on it (an agent restarted).
 */
function machine(startMs: number, opts: { uuid?: (gpu: number) => string; counterMj?: (gpu: number, tMs: number) => number } = {}) {
  let now = startMs;
  const clock = { nowMs: () => now };
  const counter = opts.counterMj ?? ((_gpu: number, t: number) => 300 * t);
  const source: PowerSource = {
    kind: "fake",
    describe: async () => ({ gpus: [] }),
    sample: async () => [0, 1].map((gpu) => ({ gpu, uuid: opts.uuid?.(gpu) ?? `GPU-${gpu}`, tMs: now, powerMw: 300_000, energyMj: counter(gpu, now) })),
    close: async () => {},
  };
  return { clock, source, set: (t: number) => (now = t), setCounter: (f: (gpu: number, t: number) => number) => (opts.counterMj = f) };
}

/** A run of the sampler that saves its state, as the agent does, and can be killed (its state is then the last saved). */
function run(m: ReturnType<typeof machine>, resumed?: CarriedWindow, node = "n1") {
  const published: PowerBatch[] = [];
  const said: string[] = [];
  let state: CarriedWindow | undefined;
  let saved: (() => void) | undefined;
  let killed = false;
  const s = createSampler({
    source: m.source,
    clock: m.clock,
    node,
    onWindow: (b) => {
      if (!killed) published.push(structuredClone(b));
    },
    carry: {
      ...(resumed ? { resumed } : {}),
      save: (st) => {
        if (killed) return;
        state = structuredClone(st);
        saved?.();
      },
      say: (l) => said.push(l),
    },
  });
  return {
    published,
    said,
    state: () => state!,
    start: async () => {
      s.start();
      await new Promise<void>((r) => (saved = r)); // the first sample's save
    },
    /** Waits for the next sample's (or boundary's) save at the clock's current time. */
    tick: () => new Promise<void>((r) => (saved = r)),
    stop: () => s.stop(),
    /** kill -9: nothing more is published or saved. The timer is stopped so the test ends. */
    kill: async () => {
      killed = true;
      await s.stop();
    },
  };
}

/** What the stream keeps: the first message of each msgId (the server's duplicate window). */
const deduped = (ws: PowerBatch[]) => [...new Map(ws.reverse().map((w) => [w.msgId, w])).values()].sort((a, b) => a.windowStartMs - b.windowStartMs);
const energyOf = (ws: PowerBatch[], gpu: number) => ws.reduce((e, w) => {
  const g = w.gpus.find((x) => x.gpu === gpu);
  return g ? e + g.energyMj!.at(-1)! - g.energyStartMj! : e;
}, 0);

test("window carry - killed mid-window and restarted in the same window: the window is finished by the next run, no energy lost", async (t) => {
  const m = machine(10_250);
  const a = run(m);
  await a.start();
  m.set(10_450);
  await a.tick();
  m.set(10_500);
  await a.kill();
  t.deepEqual(a.published, [], "nothing closed before the kill");
  m.set(10_700);
  const b = run(m, a.state());
  await b.start();
  m.set(11_300);
  await b.stop();
  const ws = deduped([...a.published, ...b.published]);
  t.deepEqual(ws.map((w) => w.windowStartMs), [10_000, 11_000]);
  t.deepEqual(ws.map((w) => w.seq), [0, 1]);
  t.deepEqual(ws[0]!.gpus[0]!.tMs, [10_250, 10_450, 10_700], "the carried samples and the new run's, in one window");
  for (const gpu of [0, 1]) t.is(energyOf(ws, gpu), 300 * (11_300 - 10_250), `gpu ${gpu}: the counter's delta over the whole span`);
  t.true(ws.every((w) => powerBatch.safeParse(w).success));
  t.regex(b.said.join("\n"), /continuing from the window .* left open \(seq 0, 2 GPUs\)/);
});

test("window carry - killed mid-window, restarted in a later window: the carried window is published, the last closed one again (same msgId, same content), the next spans the gap", async (t) => {
  const m = machine(10_250);
  const a = run(m);
  await a.start();
  m.set(11_050);
  await a.tick(); // closes 10 000 (its save), then the sample at 11 050
  await a.tick();
  await a.kill();
  t.deepEqual(a.published.map((w) => w.windowStartMs), [10_000]);
  m.set(12_400);
  const b = run(m, a.state());
  await b.start();
  m.set(12_600);
  await b.stop();
  t.deepEqual(b.published.map((w) => w.windowStartMs), [10_000, 11_000, 12_000]);
  t.deepEqual(b.published[0], a.published[0], "republished as it was: a duplicate the server drops if the first landed");
  const ws = deduped([...a.published, ...b.published]);
  t.deepEqual(ws.map((w) => w.seq), [0, 1, 2]);
  const gap = ws[2]!.gpus[0]!;
  t.is(gap.startTMs, 11_050, "the first window of the new run starts at the last reading of the old");
  t.is(gap.energyStartMj, 300 * 11_050);
  for (const gpu of [0, 1]) t.is(energyOf(ws, gpu), 300 * (12_600 - 10_250), `gpu ${gpu}: the counter's delta over the whole span`);
});

test("window carry - stopped gracefully and restarted in the same window: the next run starts after the window published at stop, from its last reading", async (t) => {
  const m = machine(10_250);
  const a = run(m);
  await a.start();
  m.set(10_600);
  await a.stop();
  t.true(a.state().stopped);
  t.is(a.state().lastClosed, undefined, "flushed at stop: nothing to publish again");
  m.set(10_800);
  const b = run(m, a.state());
  await b.start();
  m.set(11_300);
  await b.stop();
  const all = [...a.published, ...b.published];
  t.is(new Set(all.map((w) => w.msgId)).size, all.length, "no msgId used twice (a second 10 000 would have been dropped as a duplicate)");
  t.deepEqual(all.map((w) => [w.windowStartMs, w.seq]), [[10_000, 0], [11_000, 1]]);
  t.like(all[1]!.gpus[0], { startTMs: 10_600, energyStartMj: 300 * 10_600, tMs: [10_800, 11_300] });
  for (const gpu of [0, 1]) t.is(energyOf(all, gpu), 300 * (11_300 - 10_250));
});

test("window carry - not continued: another node's, another window length's, too old, another GPU, a counter gone back", async (t) => {
  const saved = async () => {
    const m = machine(10_250);
    const a = run(m);
    await a.start();
    m.set(10_600);
    await a.stop();
    return a.state();
  };
  const fresh = async (m: ReturnType<typeof machine>, state: CarriedWindow, node = "n1") => {
    const b = run(m, state, node);
    await b.start();
    m.set(11_300);
    await b.stop();
    return b;
  };
  const other = await fresh(machine(10_800), await saved(), "n2");
  t.regex(other.said.join(), /saved by node n1/);
  t.like(other.published[0], { windowStartMs: 10_000, seq: 0 });
  t.is(other.published.at(-1)!.gpus[0]!.startTMs, 10_800);

  const verdict = carryVerdict(await saved(), { node: "n1", windowMs: 500, nowMs: 10_800 });
  t.deepEqual(verdict, { ok: false, reason: "saved with 1000 ms windows, now 500 ms" });

  const late = await fresh(machine(16_000), await saved());
  t.regex(late.said.join(), /5\.4 s old \(more than 5 s\)/);
  t.is(late.published[0]!.gpus[0]!.energyStartMj, 300 * 16_000, "starts at its own first reading");

  const swapped = machine(10_800, { uuid: (g) => (g === 1 ? "GPU-new" : `GPU-${g}`) });
  const sw = await fresh(swapped, await saved());
  t.regex(sw.said.join(), /GPU 1 is GPU-new, was GPU-1/);
  t.is(sw.published[0]!.gpus[0]!.startTMs, 10_600, "GPU 0 continues");
  t.is(sw.published[0]!.gpus[1]!.startTMs, 10_800, "GPU 1 starts afresh");

  const reset = machine(10_800, { counterMj: (g, tMs) => (g === 0 ? 300 * (tMs - 10_700) : 300 * tMs) });
  const rs = await fresh(reset, await saved());
  t.regex(rs.said.join(), /GPU 0's energy counter went back/);
  t.is(rs.published[0]!.gpus[0]!.energyStartMj, 300 * 100, "GPU 0 starts at its own first reading");
  t.is(rs.published[0]!.gpus[1]!.energyStartMj, 300 * 10_600);
});

test("window carry - the state file: saved and read back (NaN columns included), a damaged file is said and ignored", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), "carry-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, "power-window.carry");
  const f = createWindowCarryFile(path);
  t.deepEqual(f.load(), { reason: "none saved" });
  const state: CarriedWindow = {
    v: 1, node: "n1", windowMs: 1000, windowStartMs: 10_000, seq: 7, stopped: false,
    last: [{ gpu: 0, uuid: "GPU-0", energyMj: Number.NaN, tMs: 9_950, powerMw: 1 }],
    columns: [{ gpu: 0, uuid: "GPU-0", hasEnergy: false, tMs: [10_050], powerMw: [2], energyMj: [], smClockMhz: [Number.NaN], memClockMhz: [1], utilPct: [1], tempC: [40] }],
  };
  f.save({ ...state, seq: 6 });
  f.save(state); // the newest wins
  await f.flush();
  t.deepEqual(createWindowCarryFile(path).load(), { state });
  writeFileSync(path, "garbage");
  const damaged = createWindowCarryFile(path).load();
  t.regex("reason" in damaged ? damaged.reason : "", /^(unreadable|malformed)/);
});
