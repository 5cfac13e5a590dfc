import test from "ava";
import fc from "fast-check";
import { simulate } from "../services/simnode/library.ts";
import { splitStep } from "../services/simnode/ledger.ts";
import { gpuSpec, modelSpec } from "../services/simnode/catalog.ts";
import { powerParams, stepCost } from "../services/simnode/power-model.ts";
import { startSimnode } from "../services/simnode/server.ts";
import type { RequestState, SeqWork } from "../services/simnode/engine.ts";

/** Response JSON, loosely typed: the assertions are the schema. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const json = (res: Response): Promise<any> => res.json();

const request = fc.record({
  arrivalMs: fc.double({ min: 0, max: 20_000, noNaN: true }),
  promptTokens: fc.integer({ min: 1, max: 3000 }),
  outputTokens: fc.integer({ min: 1, max: 300 }),
});
const workload = fc.array(request, { minLength: 1, maxLength: 30 });
const config = fc.record({
  model: fc.constantFrom("llama-3-8b", "llama-2-13b"),
  gpus: fc.constantFrom(1, 2, 3),
  smClockMhz: fc.constantFrom(1980, 1200, 990),
  maxBatch: fc.constantFrom(1, 4, 64),
  powerLimitW: fc.constantFrom(700, 300),
});

test("simnode ledger - requests' energy plus instances' idle plus unassigned GPUs is every GPU's counter (conservation), and no share is negative", (t) => {
  fc.assert(
    fc.property(workload, config, fc.double({ min: 0, max: 30_000, noNaN: true }), (w, c, extraMs) => {
      const r = simulate(w, { ...c, tp: 1, ledger: true, sampleIntervalMs: 0, untilMs: Math.max(...w.map((q) => q.arrivalMs)) + extraMs });
      const L = r.ledger!;
      const requests = L.requests.reduce((s, q) => s + q.activeMj + q.staticMj, 0);
      const idle = L.instances.reduce((s, i) => s + i.idleMj, 0);
      const counters = r.gpuEnergyMj.reduce((a, b) => a + b, 0);
      t.true(Math.abs(requests + idle + L.unassignedMj - counters) <= 1e-9 * counters, `${requests} + ${idle} + ${L.unassignedMj} vs ${counters}`);
      t.true(Math.abs(L.totalMj - counters) <= 1e-9 * counters);
      for (const q of L.requests) {
        t.true(q.activeMj >= 0 && q.staticMj >= 0 && q.prefillActiveMj >= 0 && q.decodeActiveMj >= 0);
        t.true(Math.abs(q.prefillActiveMj + q.decodeActiveMj - q.activeMj) <= 1e-9 * q.activeMj);
      }
      for (const i of L.instances) t.true(i.idleMj >= -1e-6 * counters);
      // Every served request is in the ledger with all its tokens.
      t.is(L.requests.length, r.requests.length);
      for (const q of r.requests) {
        const e = L.requests.find((x) => x.requestId === q.id)!;
        t.is(e.prefillTokens, q.promptTokens);
        t.is(e.decodeTokens, q.outputTokens - 1);
      }
    }),
    { numRuns: 40 },
  );
});

test("simnode ledger - a request alone on its instance gets the whole energy of its steps, and nothing of the idle time around them", (t) => {
  const r = simulate([{ id: "a", arrivalMs: 1000, promptTokens: 500, outputTokens: 50 }], { model: "llama-3-8b", gpus: 1, tp: 1, ledger: true, recordSteps: true, untilMs: 10_000 });
  const steps = r.steps!;
  const stepMj = steps.reduce((s, x) => s + x.powerW * (x.endMs - x.startMs), 0);
  const a = r.ledger!.requests[0]!;
  t.true(Math.abs(a.totalMj - stepMj) < 1e-6 * stepMj);
  const busyMs = steps.reduce((s, x) => s + (x.endMs - x.startMs), 0);
  t.true(Math.abs(a.staticMj - powerParams(gpuSpec("h100-sxm")).idleW * busyMs) < 1e-6 * a.staticMj);
  t.true(r.ledger!.instances[0]!.idleMj > 0.9 * 75 * (10_000 - busyMs));
});

const seq = (id: string, s: Partial<SeqWork>): SeqWork => ({ state: { req: { id, promptTokens: 1, outputTokens: 1 } } as RequestState, prefillTokens: 0, prefillStart: 0, decodeCtxTokens: 0, ...s });
const ctx = { model: modelSpec("llama-2-70b"), gpu: gpuSpec("h100-sxm"), tp: 4 };
const power = powerParams(ctx.gpu);
const costOf = (seqs: SeqWork[]) => {
  const w = { prefillTokens: 0, prefillAttnPairs: 0, prefillSeqs: 0, decodeSeqs: 0, decodeCtxTokens: 0 };
  for (const s of seqs) {
    if (s.prefillTokens > 0) {
      w.prefillTokens += s.prefillTokens;
      w.prefillSeqs++;
      w.prefillAttnPairs += s.prefillTokens * (s.prefillStart + s.prefillTokens / 2);
    } else {
      w.decodeSeqs++;
      w.decodeCtxTokens += s.decodeCtxTokens;
    }
  }
  return stepCost(ctx, power, w, { smClockMhz: 1980, powerLimitW: 700 });
};

test("simnode ledger - a step's split sums to its energy, treats equal sequences equally and does not depend on their order", (t) => {
  const seqArb = fc.oneof(
    fc.record({ prefillTokens: fc.integer({ min: 1, max: 4000 }), prefillStart: fc.nat(4000) }).map((p) => ({ ...p, decodeCtxTokens: 0 })),
    fc.record({ decodeCtxTokens: fc.integer({ min: 1, max: 8000 }) }).map((d) => ({ prefillTokens: 0, prefillStart: 0, ...d })),
  );
  fc.assert(
    fc.property(fc.array(seqArb, { minLength: 1, maxLength: 40 }), fc.integer({ min: 0, max: 1000 }), (parts, rot) => {
      const seqs = parts.map((p, k) => seq(`s${k}`, p));
      const cost = costOf(seqs);
      const { activeMj, staticMj } = splitStep(ctx, power, seqs, cost, 4);
      const total = [...activeMj, ...staticMj].reduce((a, b) => a + b, 0);
      const expected = cost.powerW * cost.durationMs * 4;
      t.true(Math.abs(total - expected) <= 1e-9 * expected);
      t.true(activeMj.every((x) => x >= 0) && staticMj.every((x) => x >= 0));
      // Rotated order: each sequence's share is unchanged.
      const k = rot % seqs.length;
      const rotated = [...seqs.slice(k), ...seqs.slice(0, k)];
      const again = splitStep(ctx, power, rotated, cost, 4);
      rotated.forEach((s, i) => {
        const j = seqs.indexOf(s);
        t.true(Math.abs(again.activeMj[i]! - activeMj[j]!) <= 1e-9 * expected);
      });
      // Identical work, identical energy.
      for (let i = 0; i < seqs.length; i++)
        for (let j = 0; j < i; j++)
          if (parts[i]!.prefillTokens === parts[j]!.prefillTokens && parts[i]!.prefillStart === parts[j]!.prefillStart && parts[i]!.decodeCtxTokens === parts[j]!.decodeCtxTokens) t.true(Math.abs(activeMj[i]! - activeMj[j]!) <= 1e-9 * expected);
    }),
    { numRuns: 100 },
  );
});

test("simnode ledger - in one step a decode at long context costs more than one at short context, and a long prefill chunk more than a decode", (t) => {
  const seqs = [seq("short", { decodeCtxTokens: 100 }), seq("long", { decodeCtxTokens: 4000 }), seq("prefill", { prefillTokens: 2000 }), ...Array.from({ length: 30 }, (_, k) => seq(`d${k}`, { decodeCtxTokens: 1000 }))];
  const { activeMj } = splitStep(ctx, power, seqs, costOf(seqs), 4);
  t.true(activeMj[1]! > 1.2 * activeMj[0]!, `${activeMj[1]} vs ${activeMj[0]}`);
  t.true(activeMj[2]! > 10 * activeMj[3]!);
});

test("simnode server - GET /admin/ledger lists each served request's energy by the engine's ledger; /admin/ledger/<id> one; an unknown id is 404", async (t) => {
  const sim = await startSimnode({ model: "llama-3-8b", gpus: 2, tp: 1, timeScale: 20 });
  t.teardown(() => sim.stop());
  const res = await fetch(`${sim.url}/v1/completions`, { method: "POST", headers: { "content-type": "application/json", "x-request-id": "led-1" }, body: JSON.stringify({ prompt: Array.from({ length: 300 }, (_, i) => i), max_tokens: 20, ignore_eos: true, stream: true }) });
  await res.text();
  const one = await json(await fetch(`${sim.url}/admin/ledger/led-1`));
  t.is(one.requestId, "led-1");
  t.is(one.prefillTokens, 300);
  t.is(one.decodeTokens, 19);
  t.true(one.activeMj > 0 && one.staticMj > 0);
  const all = await json(await fetch(`${sim.url}/admin/ledger`));
  t.deepEqual(all.requests.map((r: { requestId: string }) => r.requestId), ["led-1"]);
  const idle = all.instances.reduce((s: number, i: { idleMj: number }) => s + i.idleMj, 0);
  t.true(Math.abs(one.totalMj + idle + all.unassignedMj - all.totalMj) <= 1e-6 * all.totalMj);
  t.is((await fetch(`${sim.url}/admin/ledger/nope`)).status, 404);
});
