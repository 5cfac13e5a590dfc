import test from "ava";
import fc from "fast-check";
import { attributeWindowPrefillEnergy, decodeStepCtxTokensOf } from "../shared/energy/mod.ts";
import { createWorkTracker } from "../services/agent/mod.ts";
import { workWindow } from "../shared/mod.ts";
import { modelSpec } from "../services/simnode/mod.ts";
import { analyzerCommand } from "../services/analyzer/command.ts";
import { agentCommand } from "../services/agent/command.ts";
import { createWindowJoin } from "../services/analyzer/join.ts";
import { ConfigError, parseCommand, powerMessage, workMessage } from "../shared/mod.ts";

// Items with a context for their decode tokens: between 1 and 130k tokens each.
const items = fc.array(
  fc.record({ requestId: fc.string({ minLength: 1, maxLength: 6 }), prefillTokens: fc.nat(5000), decodeTokens: fc.nat(300), ctxPerToken: fc.integer({ min: 1, max: 130_000 }) }).map(({ ctxPerToken, ...r }) => ({ ...r, decodeCtxTokens: r.decodeTokens * ctxPerToken })),
  { maxLength: 40 },
);
const energy = fc.double({ min: 0, max: 1e7, noNaN: true });
const perToken = fc.double({ min: 0, max: 1000, noNaN: true });
const ctxK = fc.double({ min: 1, max: 1e7, noNaN: true });
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

test("attribution, decode context - conservation: Σ attributed + idle = measured, and no share is negative", (t) => {
  fc.assert(
    fc.property(energy, items, perToken, ctxK, (e, reqs, a, k) => {
      const r = attributeWindowPrefillEnergy(e, reqs, a, { decodeStepCtxTokens: k });
      const total = sum(r.shares.map((s) => s.energyMj)) + r.idleMj;
      return Math.abs(total - e) <= 1e-9 * Math.max(1, e) && r.shares.every((s) => s.energyMj >= 0 && s.prefillMj >= 0 && s.decodeMj >= 0 && Math.abs(s.prefillMj + s.decodeMj - s.energyMj) <= 1e-9 * Math.max(1, e));
    }),
  );
  t.pass();
});

test("attribution, decode context - order independence: shuffled work gives the same shares", (t) => {
  fc.assert(
    fc.property(energy, items, perToken, ctxK, fc.infiniteStream(fc.nat()), (e, reqs, a, k, rnd) => {
      const shuffled = [...reqs];
      const it = rnd[Symbol.iterator]();
      for (let i = shuffled.length - 1; i > 0; i--) {
        const j = (it.next().value as number) % (i + 1);
        [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
      }
      return JSON.stringify(attributeWindowPrefillEnergy(e, reqs, a, { decodeStepCtxTokens: k })) === JSON.stringify(attributeWindowPrefillEnergy(e, shuffled, a, { decodeStepCtxTokens: k }));
    }),
  );
  t.pass();
});

test("attribution, decode context - every decode token at the same context: the count split, whatever K", (t) => {
  fc.assert(
    fc.property(energy, items, perToken, ctxK, fc.integer({ min: 1, max: 130_000 }), (e, reqs, a, k, c) => {
      const same = reqs.map((r) => ({ ...r, decodeCtxTokens: r.decodeTokens * c }));
      const byCount = attributeWindowPrefillEnergy(e, same, a).shares;
      const byCost = attributeWindowPrefillEnergy(e, same, a, { decodeStepCtxTokens: k }).shares;
      return byCost.every((s, i) => Math.abs(s.decodeMj - byCount[i]!.decodeMj) <= 1e-9 * Math.max(1, e) && s.prefillMj === byCount[i]!.prefillMj);
    }),
  );
  t.pass();
});

test("attribution, decode context - a short context beside a long one pays for the step's fixed part and its own KV only; an item without its context falls back to the count split", (t) => {
  // Two requests decode 10 tokens each (10 steps): K = 100k, contexts 1k and 100k per token.
  // Weights: 10·(10·100k/20) + 10k = 510k and 500k + 1M = 1.5M; decode energy 2010.
  const reqs = [
    { requestId: "short", prefillTokens: 0, decodeTokens: 10, decodeCtxTokens: 10_000 },
    { requestId: "long", prefillTokens: 0, decodeTokens: 10, decodeCtxTokens: 1_000_000 },
  ];
  const r = attributeWindowPrefillEnergy(2010, reqs, 100, { decodeStepCtxTokens: 100_000 });
  const by = new Map(r.shares.map((s) => [s.requestId, s.decodeMj]));
  t.true(Math.abs(by.get("short")! - 510) < 1e-9);
  t.true(Math.abs(by.get("long")! - 1500) < 1e-9);
  // An old agent's item (no decodeCtxTokens) in the window: by count.
  const old = attributeWindowPrefillEnergy(2010, [reqs[0]!, { requestId: "long", prefillTokens: 0, decodeTokens: 10 }], 100, { decodeStepCtxTokens: 100_000 });
  t.deepEqual(old.shares.map((s) => s.decodeMj), [1005, 1005]);
  t.throws(() => attributeWindowPrefillEnergy(1, reqs, 1, { decodeStepCtxTokens: 0 }), { instanceOf: RangeError });
});

test("attribution, decode context - K from the model's config: weight bytes over KV bytes per token (Llama 3.1 70B ≈ 431 k)", (t) => {
  const k = decodeStepCtxTokensOf(modelSpec("llama-3.1-70b"));
  t.true(Math.abs(k - 70.6e9 / (2 * 80 * 8 * 128)) < 1e-6);
  // FP8 weights, BF16 KV cache: half the weight bytes.
  t.true(Math.abs(decodeStepCtxTokensOf({ ...modelSpec("llama-3.1-70b"), weightBytes: 1 }) - k / 2) < 1e-6);
});

test("work tracker - each decode token's context is its prompt and the tokens before it; WORK carries their sum, and an old item without it still passes the contract", (t) => {
  const w = createWorkTracker("n", [{ id: "i0", upstream: "u", gpus: [0] }]);
  w.started("i0", "a", 0, 90); // the arrival's estimate: replaced by the first token's count
  w.prefill("i0", "a", 100);
  w.decode("i0", "a", 2); // tokens 2 and 3 of the output: contexts 101, 102
  t.deepEqual(w.closeWindow(0, 1000)[0]!.requests, [{ requestId: "a", prefillTokens: 100, decodeTokens: 2, prefillCtxTokens: (100 * 99) / 2, decodeCtxTokens: 203 }]);
  w.decode("i0", "a", 1); // context 103
  w.prefill("i0", "a", 5); // usage says the prompt was 105: later tokens see it
  w.decode("i0", "a", 1); // context 105 + 4
  const [win] = w.closeWindow(1000, 2000);
  t.deepEqual(win!.requests, [{ requestId: "a", prefillTokens: 5, decodeTokens: 2, prefillCtxTokens: 5 * 100 + 10, decodeCtxTokens: 103 + 109 }]);
  t.true(workWindow.safeParse(win).success);
  const base = { v: 1, kind: "work", msgId: "m", node: "n", instance: "i0", gpus: [0], windowStartMs: 0, windowEndMs: 1000 };
  t.true(workWindow.safeParse({ ...base, requests: [{ requestId: "a", prefillTokens: 1, decodeTokens: 2 }] }).success);
  t.false(workWindow.safeParse({ ...base, requests: [{ requestId: "a", prefillTokens: 1, decodeTokens: 2, decodeCtxTokens: -1 }] }).success);
});

test("analyzer command - --decode-step-ctx-tokens (or its env var) sets K; nonsense is refused by name", (t) => {
  const flags = parseCommand(analyzerCommand.spec, ["--prefill-mj-per-token", "193", "--decode-step-ctx-tokens", "430908"], {});
  if (!flags.help) t.is(flags.config.decodeStepCtxTokens, 430908);
  const env = parseCommand(analyzerCommand.spec, [], { JOULESTREAM_DECODE_STEP_CTX_TOKENS: "1000" });
  if (!env.help) t.is(env.config.decodeStepCtxTokens, 1000);
  const e = t.throws(() => parseCommand(analyzerCommand.spec, ["--decode-step-ctx-tokens", "0"], {}), { instanceOf: ConfigError });
  t.regex(e.message, /--decode-step-ctx-tokens/);
});

test("join - with decodeStepCtxTokens the windowed join splits decode energy by context", (t) => {
  const run = (k?: number) => {
    const join = createWindowJoin<number>({ prefillMjPerToken: 100, ...(k !== undefined ? { decodeStepCtxTokens: k } : {}) });
    const gpu = { gpu: 0, uuid: "GPU-0", tMs: [2000], powerMw: [1000_000], energyMj: [3010], energyStartMj: 1000, startTMs: 1000 };
    join.addPower(powerMessage({ node: "n", seq: 0, windowStartMs: 1000, windowEndMs: 2000, source: "fake", gpus: [gpu], instances: ["i0"] }), 1);
    const requests = [
      { requestId: "short", prefillTokens: 0, decodeTokens: 10, decodeCtxTokens: 10_000 },
      { requestId: "long", prefillTokens: 0, decodeTokens: 10, decodeCtxTokens: 1_000_000 },
    ];
    join.addWork(workMessage({ node: "n", instance: "i0", gpus: [0], windowStartMs: 1000, windowEndMs: 2000, requests }), 2);
    for (const id of ["short", "long"]) {
      const base = { v: 1 as const, kind: "request" as const, node: "n", instance: "i0", requestId: id };
      join.addRequest({ ...base, msgId: `s${id}`, event: "start", tMs: 1100, endpoint: "completions", stream: true }, 3);
      join.addRequest({ ...base, msgId: `e${id}`, event: "end", tMs: 1900, status: "ok", promptTokens: 3, outputTokens: 11 }, 4);
    }
    return new Map(join.flush().requests.map((r) => [r.requestId, r.energyMj]));
  };
  t.deepEqual([...run()].sort(), [["long", 1005], ["short", 1005]].sort());
  const by = run(100_000); // 10 steps: weights 510k and 1.5M of 2.01M
  t.true(Math.abs(by.get("short")! - 510) < 1e-9 && Math.abs(by.get("long")! - 1500) < 1e-9);
});

// Prefill items with positions: a window's part of a prompt of up to 120k tokens.
const prefillItems = fc.array(
  fc.record({ requestId: fc.string({ minLength: 1, maxLength: 6 }), prefillTokens: fc.nat(5000), decodeTokens: fc.nat(300), start: fc.nat(120_000) }).map(({ start, ...r }) => ({ ...r, prefillCtxTokens: r.prefillTokens * start + (r.prefillTokens * (r.prefillTokens - 1)) / 2, decodeCtxTokens: r.decodeTokens * (start + r.prefillTokens) })),
  { maxLength: 40 },
);
const prefillCtx = fc.record({ k: fc.double({ min: 1, max: 1e6, noNaN: true }), calibrationPosition: fc.double({ min: 0, max: 1e5, noNaN: true }) });

test("attribution, prefill positions - conservation, no negative share, order independence", (t) => {
  fc.assert(
    fc.property(energy, prefillItems, perToken, ctxK, prefillCtx, (e, reqs, a, k, pc) => {
      const costs = { decodeStepCtxTokens: k, prefillCtx: pc };
      const r = attributeWindowPrefillEnergy(e, reqs, a, costs);
      const total = sum(r.shares.map((s) => s.energyMj)) + r.idleMj;
      const reversed = attributeWindowPrefillEnergy(e, [...reqs].reverse(), a, costs);
      return Math.abs(total - e) <= 1e-9 * Math.max(1, e) && r.shares.every((s) => s.energyMj >= 0 && s.prefillMj >= 0 && s.decodeMj >= 0) && JSON.stringify(r) === JSON.stringify(reversed);
    }),
  );
  t.pass();
});

test("attribution, prefill positions - a token at the calibration's position costs prefillMjPerToken, one further on more (∝ Kp + x); an item without positions keeps the fixed cost", (t) => {
  const pc = { k: 1000, calibrationPosition: 1000 };
  const d = { requestId: "d", prefillTokens: 0, decodeTokens: 1, decodeCtxTokens: 5 };
  const at = (x: number) => attributeWindowPrefillEnergy(1e6, [{ requestId: "p", prefillTokens: 1, decodeTokens: 0, prefillCtxTokens: x }, d], 100, { prefillCtx: pc }).shares.find((s) => s.requestId === "p")!.prefillMj;
  t.is(at(1000), 100);
  t.is(at(3000), 200);
  t.is(at(0), 50);
  t.is(attributeWindowPrefillEnergy(1e6, [{ requestId: "p", prefillTokens: 1, decodeTokens: 0 }, d], 100, { prefillCtx: pc }).shares.find((s) => s.requestId === "p")!.prefillMj, 100);
});

test("work tracker - prefill tokens carry their positions in the prompt, estimated before the first token or not", (t) => {
  const w = createWorkTracker("n", [{ id: "i0", upstream: "u", gpus: [0] }], { prefillTokensPerS: 1000 });
  w.started("i0", "a", 0, 1500);
  const [first] = w.closeWindow(0, 1000); // the spread's estimate: 1000 tokens, positions 0…999
  t.deepEqual(first!.requests, [{ requestId: "a", prefillTokens: 1000, decodeTokens: 0, prefillCtxTokens: (1000 * 999) / 2, awaitingFirstToken: true }]);
  w.prefill("i0", "a", 1500); // the rest: positions 1000…1499
  t.deepEqual(w.closeWindow(1000, 2000)[0]!.requests, [{ requestId: "a", prefillTokens: 500, decodeTokens: 0, prefillCtxTokens: 500 * 1000 + (500 * 499) / 2 }]);
});

test("analyzer command - --prefill-ctx-tokens sets Kp, at the calibration burst's mean position (2048-token prompts unless told)", (t) => {
  const f = parseCommand(analyzerCommand.spec, ["--prefill-mj-per-token", "193", "--prefill-ctx-tokens", "53864"], {});
  if (!f.help) t.deepEqual([f.config.prefillCtxTokens, f.config.prefillCalibrationPromptTokens], [53864, 2048]);
  t.throws(() => parseCommand(analyzerCommand.spec, ["--prefill-ctx-tokens", "-1"], {}), { instanceOf: ConfigError, message: /--prefill-ctx-tokens/ });
});

test("agent command - --prefill-ctx-tokens slows the spread down along a prompt, from the calibration burst's mean position", (t) => {
  const f = parseCommand(agentCommand.spec, ["--prefill-tokens-per-s", "14285", "--prefill-ctx-tokens", "53864"], {});
  if (!f.help) t.deepEqual([f.config.prefillCtxTokens, f.config.prefillCalibrationPromptTokens], [53864, 2048]);
  t.throws(() => parseCommand(agentCommand.spec, ["--prefill-ctx-tokens", "x"], {}), { instanceOf: ConfigError, message: /--prefill-ctx-tokens/ });
});
