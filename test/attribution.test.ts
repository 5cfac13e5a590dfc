import test from "ava";
import fc from "fast-check";
import { attributeWindow } from "../shared/energy/mod.ts";
import { gpuWindowEnergy } from "../shared/energy/mod.ts";

const items = fc.array(
  fc.record({ requestId: fc.string({ minLength: 1, maxLength: 6 }), prefillTokens: fc.nat(5000), decodeTokens: fc.nat(300) }),
  { maxLength: 40 },
);
const energy = fc.double({ min: 0, max: 1e7, noNaN: true });
const weight = fc.double({ min: 0, max: 10, noNaN: true });
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

test("attribution - conservation: Σ attributed + idle = measured", (t) => {
  fc.assert(
    fc.property(energy, items, weight, (e, reqs, w) => {
      const a = attributeWindow(e, reqs, w);
      const total = sum(a.shares.map((s) => s.energyMj)) + a.idleMj;
      return Math.abs(total - e) <= 1e-9 * Math.max(1, e);
    }),
  );
  t.pass();
});

test("attribution - no negative energy", (t) => {
  fc.assert(fc.property(energy, items, weight, (e, reqs, w) => attributeWindow(e, reqs, w).shares.every((s) => s.energyMj >= 0 && s.prefillMj >= 0 && s.decodeMj >= 0)));
  t.pass();
});

test("attribution - order independence: shuffled work gives the same shares", (t) => {
  fc.assert(
    fc.property(energy, items, weight, fc.infiniteStream(fc.nat()), (e, reqs, w, rnd) => {
      const shuffled = [...reqs];
      const it = rnd[Symbol.iterator]();
      for (let i = shuffled.length - 1; i > 0; i--) {
        const j = (it.next().value as number) % (i + 1);
        [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
      }
      const a = attributeWindow(e, reqs, w);
      const b = attributeWindow(e, shuffled, w);
      return JSON.stringify(a) === JSON.stringify(b);
    }),
  );
  t.pass();
});

test("attribution - a window without work is idle", (t) => {
  t.deepEqual(attributeWindow(500, []), { shares: [], idleMj: 500 });
  t.deepEqual(attributeWindow(500, [{ requestId: "a", prefillTokens: 0, decodeTokens: 0 }]), { shares: [], idleMj: 500 });
});

test("attribution - prefill weight sets the cost of a prompt token against a decode token", (t) => {
  const a = attributeWindow(100, [{ requestId: "p", prefillTokens: 10, decodeTokens: 0 }, { requestId: "d", prefillTokens: 0, decodeTokens: 1 }], 0.1);
  t.is(a.shares.find((s) => s.requestId === "p")!.energyMj, 50);
  t.is(a.shares.find((s) => s.requestId === "d")!.energyMj, 50);
});

const base = { gpu: 0, uuid: "GPU-0" };

test("window energy - counter deltas from the previous window's last reading", (t) => {
  // 300 W for 100 ms = 30 J = 30,000 mJ per interval.
  const e = gpuWindowEnergy({ ...base, tMs: [1100, 1200], powerMw: [300_000, 300_000], energyMj: [31_000, 61_000], energyStartMj: 1000, startTMs: 1000 });
  t.is(e.energyMj, 60_000);
  t.is(e.method, "counter");
});

test("window energy - a counter reset is integrated from power, never a negative or huge spike", (t) => {
  // 300 W for 100 ms = 30,000 mJ per interval; the counter restarts at 5 after the driver reloads.
  const e = gpuWindowEnergy({ ...base, tMs: [1100, 1200, 1300], powerMw: [300_000, 300_000, 300_000], energyMj: [31_000, 5, 30_005], energyStartMj: 1000, startTMs: 1000 });
  t.is(e.resets, 1);
  t.true(Math.abs(e.energyMj - 90_000) < 1e-6);
});

test("window energy - a counter that steps back a few mJ (jitter) is neither a reset nor counted twice", (t) => {
  // 300 W: +30,000 mJ per 100 ms; the second reading is 5 mJ low, the third is on track again.
  const e = gpuWindowEnergy({ ...base, tMs: [1100, 1200, 1300], powerMw: [300_000, 300_000, 300_000], energyMj: [31_000, 30_995, 91_000], energyStartMj: 1000, startTMs: 1000 });
  t.is(e.resets, 0);
  t.is(e.energyMj, 90_000, "the counter's movement, once");
});

test("window energy - an implausible jump is treated as a glitch", (t) => {
  const e = gpuWindowEnergy({ ...base, tMs: [1100, 1200], powerMw: [300_000, 300_000], energyMj: [31_000, 9e12], energyStartMj: 1000, startTMs: 1000 });
  t.is(e.resets, 1);
  t.true(Math.abs(e.energyMj - 60_000) < 1e-6);
});

test("window energy - without a counter, power is integrated over the same span", (t) => {
  const e = gpuWindowEnergy({ ...base, tMs: [1100, 1200], powerMw: [200_000, 400_000], startTMs: 1000 });
  // [1000,1100] held at 200 W → 20 J; [1100,1200] trapezoid at 300 W → 30 J.
  t.true(Math.abs(e.energyMj - 50_000) < 1e-6);
  t.is(e.method, "integrated");
});

test("window energy - without a counter, the gap from the previous window's last sample is a trapezoid from its power", (t) => {
  // The previous window ended at 400 W: [1000,1100] is a trapezoid 400 → 200 W = 30 J, not 20 J held at 200 W.
  const e = gpuWindowEnergy({ ...base, tMs: [1100, 1200], powerMw: [200_000, 400_000], startTMs: 1000, startPowerMw: 400_000 });
  t.true(Math.abs(e.energyMj - 60_000) < 1e-6, `${e.energyMj}`);
  // Split anywhere, windows sum to the one trapezoid integral of all their samples.
  const ts = [1000, 1100, 1200, 1300, 1400];
  const ps = [400_000, 200_000, 400_000, 100_000, 300_000];
  const whole = gpuWindowEnergy({ ...base, tMs: ts.slice(1), powerMw: ps.slice(1), startTMs: ts[0]!, startPowerMw: ps[0]! }).energyMj;
  const a = gpuWindowEnergy({ ...base, tMs: ts.slice(1, 3), powerMw: ps.slice(1, 3), startTMs: ts[0]!, startPowerMw: ps[0]! }).energyMj;
  const b = gpuWindowEnergy({ ...base, tMs: ts.slice(3), powerMw: ps.slice(3), startTMs: ts[2]!, startPowerMw: ps[2]! }).energyMj;
  t.true(Math.abs(a + b - whole) < 1e-6);
});

test("window energy - additivity: one window's counter span equals the sum of its halves", (t) => {
  fc.assert(
    fc.property(fc.array(fc.double({ min: 0, max: 100, noNaN: true }), { minLength: 2, maxLength: 30 }), (incs) => {
      const counter: number[] = [];
      let c = 1000;
      for (const i of incs) counter.push((c += i));
      const tMs = counter.map((_, i) => 1100 + i * 100);
      const power = counter.map(() => 300_000);
      const whole = gpuWindowEnergy({ ...base, tMs, powerMw: power, energyMj: counter, energyStartMj: 1000, startTMs: 1000 }).energyMj;
      const k = Math.floor(counter.length / 2);
      const first = gpuWindowEnergy({ ...base, tMs: tMs.slice(0, k), powerMw: power.slice(0, k), energyMj: counter.slice(0, k), energyStartMj: 1000, startTMs: 1000 }).energyMj;
      const second = gpuWindowEnergy({ ...base, tMs: tMs.slice(k), powerMw: power.slice(k), energyMj: counter.slice(k), energyStartMj: k > 0 ? counter[k - 1]! : 1000, startTMs: k > 0 ? tMs[k - 1]! : 1000 }).energyMj;
      return Math.abs(whole - (first + second)) <= 1e-6;
    }),
  );
  t.pass();
});

test("units - a watt for a second is a joule", async (t) => {
  const { energyMjOf, mjToJ } = await import("../shared/units.ts");
  t.is(mjToJ(energyMjOf(1000, 1000)), 1); // 1000 mW × 1000 ms = 1 J
  t.is(energyMjOf(700_000, 100), 70_000); // an H100 at TDP for 100 ms: 70 J
});
