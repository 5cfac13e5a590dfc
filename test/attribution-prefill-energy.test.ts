import test from "ava";
import fc from "fast-check";
import { attributeWindowPrefillEnergy, staticParts } from "../shared/energy/mod.ts";
import { createWindowJoin } from "../services/analyzer/join.ts";
import { requestPoint } from "../services/analyzer/points.ts";
import { analyzerCommand } from "../services/analyzer/command.ts";
import { calibrationFrom, calibrateSimulated } from "../services/lab/mod.ts";
import { gpuSpec, powerParams } from "../services/simnode/mod.ts";
import { ConfigError, parseCommand, powerMessage, requestEnergy, workMessage } from "../shared/mod.ts";

const items = fc.array(
  fc.record({ requestId: fc.string({ minLength: 1, maxLength: 6 }), prefillTokens: fc.nat(5000), decodeTokens: fc.nat(300) }),
  { maxLength: 40 },
);
const energy = fc.double({ min: 0, max: 1e7, noNaN: true });
const perToken = fc.double({ min: 0, max: 1000, noNaN: true });
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

test("attribution, prefill-energy rule - conservation: Σ attributed + idle = measured, and no share is negative", (t) => {
  fc.assert(
    fc.property(energy, items, perToken, (e, reqs, a) => {
      const r = attributeWindowPrefillEnergy(e, reqs, a);
      const total = sum(r.shares.map((s) => s.energyMj)) + r.idleMj;
      return Math.abs(total - e) <= 1e-9 * Math.max(1, e) && r.shares.every((s) => s.energyMj >= 0 && s.prefillMj >= 0 && s.decodeMj >= 0 && Math.abs(s.prefillMj + s.decodeMj - s.energyMj) <= 1e-9 * Math.max(1, e));
    }),
  );
  t.pass();
});

test("attribution, prefill-energy rule - order independence: shuffled work gives the same shares", (t) => {
  fc.assert(
    fc.property(energy, items, perToken, fc.infiniteStream(fc.nat()), (e, reqs, a, rnd) => {
      const shuffled = [...reqs];
      const it = rnd[Symbol.iterator]();
      for (let i = shuffled.length - 1; i > 0; i--) {
        const j = (it.next().value as number) % (i + 1);
        [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
      }
      return JSON.stringify(attributeWindowPrefillEnergy(e, reqs, a)) === JSON.stringify(attributeWindowPrefillEnergy(e, shuffled, a));
    }),
  );
  t.pass();
});

test("attribution, prefill-energy rule - prefill tokens cost their fixed energy, decode tokens share the rest, prefill never takes more than the window", (t) => {
  const r = attributeWindowPrefillEnergy(1000, [{ requestId: "p", prefillTokens: 2, decodeTokens: 0 }, { requestId: "d1", prefillTokens: 0, decodeTokens: 3 }, { requestId: "d2", prefillTokens: 0, decodeTokens: 1 }], 100);
  const by = new Map(r.shares.map((s) => [s.requestId, s.energyMj]));
  t.is(by.get("p"), 200);
  t.is(by.get("d1"), 600);
  t.is(by.get("d2"), 200);
  const capped = attributeWindowPrefillEnergy(100, [{ requestId: "p", prefillTokens: 5, decodeTokens: 0 }, { requestId: "d", prefillTokens: 0, decodeTokens: 1 }], 100);
  t.is(capped.shares.find((s) => s.requestId === "p")!.energyMj, 100);
  t.is(capped.shares.find((s) => s.requestId === "d")!.energyMj, 0);
  // No decode at all: the prefills have the whole window, whatever their fixed cost says.
  t.is(attributeWindowPrefillEnergy(100, [{ requestId: "p", prefillTokens: 5, decodeTokens: 0 }], 1).shares[0]!.energyMj, 100);
  t.deepEqual(attributeWindowPrefillEnergy(100, [], 5), { shares: [], idleMj: 100 });
});

test("join - with prefillMjPerToken the windowed join attributes by the prefill-energy rule", (t) => {
  const join = createWindowJoin<number>({ prefillMjPerToken: 100 });
  oneWindow(join);
  const out = join.flush();
  const w = out.instanceWindows[0]!;
  t.is(w.energyMj, 1000);
  t.is(w.attributedMj, 1000);
  const by = new Map(out.requests.map((r) => [r.requestId, r.energyMj]));
  t.is(by.get("p"), 300);
  t.is(by.get("d"), 700);
});

test("attribution, static parts - each share's static part is in [0, its energy], and they sum to the window's static energy, capped at what was attributed", (t) => {
  fc.assert(
    fc.property(fc.array(fc.record({ energyMj: fc.double({ min: 0, max: 1e6, noNaN: true }) }), { maxLength: 30 }), fc.double({ min: 0, max: 1e7, noNaN: true }), (shares, st) => {
      const parts = staticParts(shares, st);
      const total = sum(shares.map((s) => s.energyMj));
      const want = total > 0 ? Math.min(st, total) : 0;
      return parts.length === shares.length && parts.every((p, k) => p >= 0 && p <= shares[k]!.energyMj) && Math.abs(sum(parts) - want) <= 1e-9 * Math.max(1, want);
    }),
  );
  t.pass();
});

/** One 1-s window of 1,000 mJ on one GPU: p prefilled 3 tokens, d decoded 10; both start and end in it. */
function oneWindow(join: ReturnType<typeof createWindowJoin<number>>, ends = true) {
  const gpu = { gpu: 0, uuid: "GPU-0", tMs: [2000], powerMw: [1000_000], energyMj: [2000], energyStartMj: 1000, startTMs: 1000 };
  join.addPower(powerMessage({ node: "n", seq: 0, windowStartMs: 1000, windowEndMs: 2000, source: "fake", gpus: [gpu], instances: ["i0"] }), 1);
  join.addWork(workMessage({ node: "n", instance: "i0", gpus: [0], windowStartMs: 1000, windowEndMs: 2000, requests: [{ requestId: "p", prefillTokens: 3, decodeTokens: 0 }, { requestId: "d", prefillTokens: 0, decodeTokens: 10 }] }), 2);
  for (const id of ["p", "d"]) {
    const base = { v: 1 as const, kind: "request" as const, node: "n", instance: "i0", requestId: id };
    join.addRequest({ ...base, msgId: `s${id}`, event: "start", tMs: 1100, endpoint: "completions", stream: true }, 3);
    if (ends) endOf(join, id);
  }
}
const endOf = (join: ReturnType<typeof createWindowJoin<number>>, id: string) =>
  join.addRequest({ v: 1, kind: "request", node: "n", instance: "i0", requestId: id, msgId: `e${id}`, event: "end", tMs: 1900, status: "ok", promptTokens: 3, outputTokens: 10 }, 4);

test("join - with the GPUs' static power, each request's static part is reported beside its active energy, in ENERGY and in the InfluxDB point", (t) => {
  const join = createWindowJoin<number>({ prefillMjPerToken: 100, staticPowerW: 0.3 });
  oneWindow(join);
  const out = join.flush();
  const p = out.requests.find((r) => r.requestId === "p")!;
  const d = out.requests.find((r) => r.requestId === "d")!;
  // 0.3 W × 1 GPU × 1 s = 300 mJ of the window's 1,000 is static: p has 30 % of the window, so 90 mJ of it.
  t.is(p.energyMj, 300);
  t.true(Math.abs(p.staticEnergyMj! - 90) < 1e-9);
  t.true(Math.abs(p.activeEnergyMj! - 210) < 1e-9);
  t.true(Math.abs(d.staticEnergyMj! - 210) < 1e-9);
  t.true(Math.abs(d.activeEnergyMj! - 490) < 1e-9);
  t.true(requestEnergy.safeParse(p).success);
  const line = requestPoint(p).toLineProtocol()!;
  t.regex(line, /static_j=0\.09/);
  t.regex(line, /active_j=0\.21/);
  // Without it, the records are as before: no static part claimed.
  const plain = createWindowJoin<number>({ prefillMjPerToken: 100 });
  oneWindow(plain);
  const q = plain.flush().requests.find((r) => r.requestId === "p")!;
  t.is(q.staticEnergyMj, undefined);
  t.is(q.activeEnergyMj, undefined);
  t.notRegex(requestPoint(q).toLineProtocol()!, /static_j/);
});

test("join - a snapshot from before static parts existed (11-element request tuples) restores, and its requests carry no static part", (t) => {
  const a = createWindowJoin<number>({ staticPowerW: 0.3 });
  oneWindow(a, false);
  t.is(a.drain().requests.length, 0, "open at the snapshot, their window's shares in it");
  const snap = a.snapshot();
  const old = { ...snap, requests: snap.requests.map(([node, tuples]) => [node, tuples.map((tu) => tu.slice(0, 11))]) } as typeof snap;
  const b = createWindowJoin<number>();
  b.restore(old);
  endOf(b, "p");
  endOf(b, "d");
  const out = b.flush().requests;
  t.is(out.length, 2);
  t.is(out.reduce((x, r) => x + r.energyMj, 0), 1000);
  for (const r of out) t.is(r.staticEnergyMj, undefined);
});

test("analyzer command - --prefill-mj-per-token and --static-power-w (or their env vars) select the rule and the static part; nonsense is refused by name", (t) => {
  const flags = parseCommand(analyzerCommand.spec, ["--prefill-mj-per-token", "193.4", "--static-power-w", "75"], {});
  t.false(flags.help);
  if (!flags.help) {
    t.is(flags.config.prefillMjPerToken, 193.4);
    t.is(flags.config.staticPowerW, 75);
  }
  const env = parseCommand(analyzerCommand.spec, [], { JOULESTREAM_PREFILL_MJ_PER_TOKEN: "120", JOULESTREAM_STATIC_POWER_W: "60" });
  if (!env.help) {
    t.is(env.config.prefillMjPerToken, 120);
    t.is(env.config.staticPowerW, 60);
  }
  const none = parseCommand(analyzerCommand.spec, [], {});
  if (!none.help) t.is(none.config.prefillMjPerToken, undefined, "the token-weight rule stays the default");
  const e = t.throws(() => parseCommand(analyzerCommand.spec, ["--prefill-mj-per-token", "-3"], {}), { instanceOf: ConfigError });
  t.regex(e.message, /--prefill-mj-per-token/);
});

test("calibrate - static power is idle energy over time per GPU, prefill energy is burst energy over prompt tokens; the simulated H100 gives its model's idle power and a prefill token in the range of the bench's", (t) => {
  const c = calibrationFrom({ idle: { energyMj: 3_000_000, durationMs: 10_000, gpus: 4 }, burst: { energyMj: 2_000_000, durationMs: 4000, promptTokens: 10_000 } });
  t.deepEqual(c, { staticPowerW: 75, prefillMjPerToken: 200, prefillTokensPerS: 2500 });
  t.throws(() => calibrationFrom({ idle: { energyMj: 1, durationMs: 0, gpus: 1 }, burst: { energyMj: 1, durationMs: 1, promptTokens: 1 } }), { instanceOf: RangeError });
  const sim = calibrateSimulated({ model: "llama-3.1-70b", tp: 4 });
  t.true(Math.abs(sim.staticPowerW - powerParams(gpuSpec("h100-sxm")).idleW) < 1e-6, `${sim.staticPowerW} W`);
  t.true(sim.prefillMjPerToken > 150 && sim.prefillMjPerToken < 250, `${sim.prefillMjPerToken} mJ`);
});
