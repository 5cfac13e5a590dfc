import test from "ava";
import fc from "fast-check";
import { attributeWindowPrefillEnergy } from "../shared/energy/mod.ts";
import { createWindowJoin } from "../services/analyzer/join.ts";
import { powerMessage, workMessage } from "../shared/mod.ts";

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
  const gpu = { gpu: 0, uuid: "GPU-0", tMs: [2000], powerMw: [1000_000], energyMj: [2000], energyStartMj: 1000, startTMs: 1000 };
  join.addPower(powerMessage({ node: "n", seq: 0, windowStartMs: 1000, windowEndMs: 2000, source: "fake", gpus: [gpu], instances: ["i0"] }), 1);
  join.addWork(workMessage({ node: "n", instance: "i0", gpus: [0], windowStartMs: 1000, windowEndMs: 2000, requests: [{ requestId: "p", prefillTokens: 3, decodeTokens: 0 }, { requestId: "d", prefillTokens: 0, decodeTokens: 10 }] }), 2);
  for (const id of ["p", "d"]) {
    const base = { v: 1 as const, kind: "request" as const, node: "n", instance: "i0", requestId: id };
    join.addRequest({ ...base, msgId: `s${id}`, event: "start", tMs: 1100, endpoint: "completions", stream: true }, 3);
    join.addRequest({ ...base, msgId: `e${id}`, event: "end", tMs: 1900, status: "ok", promptTokens: 3, outputTokens: 10 }, 4);
  }
  const out = join.flush();
  const w = out.instanceWindows[0]!;
  t.is(w.energyMj, 1000);
  t.is(w.attributedMj, 1000);
  const by = new Map(out.requests.map((r) => [r.requestId, r.energyMj]));
  t.is(by.get("p"), 300);
  t.is(by.get("d"), 700);
});
