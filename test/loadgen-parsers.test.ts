import test from "ava";
import fc from "fast-check";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { azureTrace, burstGptTrace, mooncakeTrace, parseTimestampMs, syntheticWorkload, TraceError, tokenIdPrompt, classify, createHistogram, BLOCK_TOKENS, type WorkloadRequest } from "../services/loadgen/mod.ts";

const dir = mkdtempSync(join(tmpdir(), "loadgen-parsers-"));
let n = 0;
const file = (name: string, text: string) => {
  const p = join(dir, `${n++}-${name}`);
  writeFileSync(p, text);
  return p;
};
const all = async (it: AsyncIterable<WorkloadRequest>) => {
  const out: WorkloadRequest[] = [];
  for await (const w of it) out.push(w);
  return out;
};

test("loadgen - azure parser names file and line of a bad row", async (t) => {
  const p = file("bad.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,4808,10\n2023-11-16 18:17:04.0319600,many,8\n");
  const err = await t.throwsAsync(all(azureTrace(p)), { instanceOf: TraceError });
  t.is(err!.file, p);
  t.is(err!.line, 3);
  t.true(err!.message.startsWith(`${p}:3: ContextTokens "many"`), err!.message);
});

test("loadgen - azure parser in lenient mode skips bad rows and reports each", async (t) => {
  const p = file("bad.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,4808,10\nnot-a-time,1,1\n2023-11-16 18:17:04.0319600,3180,8\n");
  const skipped: TraceError[] = [];
  const rows = await all(azureTrace(p, { lenient: true, onSkip: (e) => skipped.push(e) }));
  t.deepEqual(rows.map((r) => [r.index, r.promptTokens, r.outputTokens]), [[0, 4808, 10], [1, 3180, 8]]);
  t.deepEqual(skipped.map((e) => e.line), [3]);
});

test("loadgen - azure parser reads 2023 7-digit and 2024 offset timestamps to the microsecond", async (t) => {
  const p = file("2024.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2024-05-10 00:00:00.009930+00:00,10,2\n2024-05-10 00:00:01+00:00,11,3\n2024-05-10 02:00:01.5+02:00,12,4\n");
  const rows = await all(azureTrace(p));
  t.deepEqual(rows.map((r) => Math.round(r.offsetMs * 1000) / 1000), [0, 990.07, 1490.07]);
  // float64 epoch ms resolve ~0.24 µs today: 7 digits (0.1 µs) survive to within that.
  t.true(Math.abs(parseTimestampMs("2023-11-16 18:17:03.9799600")! - parseTimestampMs("2023-11-16 18:17:03")! - 979.96) < 1e-3);
  t.is(parseTimestampMs("2024-05-10 00:00:00.009930+00:00"), Date.UTC(2024, 4, 10) + 9.93);
  t.is(parseTimestampMs("2024-02-31 00:00:00"), undefined);
  t.is(parseTimestampMs("yesterday"), undefined);
});

test("loadgen - azure parser rejects a missing header and a row going back in time", async (t) => {
  const noHeader = file("nohdr.csv", "2023-11-16 18:17:03.9799600,4808,10\n");
  t.regex((await t.throwsAsync(all(azureTrace(noHeader))))!.message, /:1: header must name TIMESTAMP/);
  const back = file("back.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:04,1,1\n2023-11-16 18:17:03,1,1\n");
  t.regex((await t.throwsAsync(all(azureTrace(back))))!.message, /back\.csv:3: timestamp goes back by 1000\.000 ms/);
});

test("loadgen - trace transformations window, speed up, sample, cap and renumber", async (t) => {
  const lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"];
  for (let i = 0; i < 100; i++) lines.push(`2023-11-16 00:00:${String(Math.floor(i / 10)).padStart(2, "0")}.${i % 10}000000,${100 + i},${5000 + i}`);
  const p = file("many.csv", lines.join("\n") + "\n");
  const w = await all(azureTrace(p, { fromMs: 2000, windowMs: 3000, speedup: 10, maxOutputTokens: 1024 }));
  t.is(w.length, 30);
  t.deepEqual([w[0]!.index, w[0]!.offsetMs, w[0]!.promptTokens, w[0]!.outputTokens], [0, 0, 120, 1024]);
  t.is(w[29]!.index, 29);
  t.true(Math.abs(w[29]!.offsetMs - 290) < 1e-6);
  const s1 = await all(azureTrace(p, { sample: 0.3, seed: 7 }));
  const s2 = await all(azureTrace(p, { sample: 0.3, seed: 7 }));
  t.deepEqual(s1, s2, "sampling is reproducible from its seed");
  t.true(s1.length > 10 && s1.length < 50);
  t.is((await all(azureTrace(p, { limit: 7 }))).length, 7);
});

test("loadgen - mooncake parser names file and line of a bad row", async (t) => {
  const p = file("bad.jsonl", '{"timestamp": 0, "input_length": 10, "output_length": 2, "hash_ids": [0]}\n{"timestamp": 5, "input_length": -1, "output_length": 2}\n');
  const err = await t.throwsAsync(all(mooncakeTrace(p)), { instanceOf: TraceError });
  t.is(err!.message, `${p}:2: input_length -1 is not a non-negative integer`);
  const broken = file("broken.jsonl", '{"timestamp": 0, "input_length": 10, "output_length": 2}\n{"timestamp": 5,\n');
  t.regex((await t.throwsAsync(all(mooncakeTrace(broken))))!.message, /broken\.jsonl:2: not JSON/);
});

test("loadgen - mooncake hash ids give prompts sharing exactly the blocks the trace shares", async (t) => {
  const p = file("share.jsonl", [
    '{"timestamp": 0, "input_length": 1300, "output_length": 2, "hash_ids": [0, 1, 2]}',
    '{"timestamp": 1, "input_length": 1100, "output_length": 2, "hash_ids": [0, 1, 9]}',
    '{"timestamp": 2, "input_length": 600, "output_length": 2, "hash_ids": [0, 7]}',
    '{"timestamp": 3, "input_length": 600, "output_length": 2}',
  ].join("\n"));
  const w = await all(mooncakeTrace(p));
  const prompts = w.map((r) => tokenIdPrompt(r.index, r.promptTokens, r.hashIds));
  t.deepEqual(prompts.map((x) => x.length), [1300, 1100, 600, 600]);
  const block = (x: number[], b: number) => x.slice(b * BLOCK_TOKENS, (b + 1) * BLOCK_TOKENS).join(",");
  t.is(block(prompts[0]!, 0), block(prompts[1]!, 0));
  t.is(block(prompts[0]!, 1), block(prompts[1]!, 1));
  t.is(block(prompts[0]!, 0), block(prompts[2]!, 0));
  t.not(block(prompts[0]!, 2).slice(0, 20), block(prompts[1]!, 2).slice(0, 20), "different hash ids differ from their first tokens");
  t.not(block(prompts[0]!, 1), block(prompts[2]!, 1));
  t.not(block(prompts[3]!, 0), block(prompts[0]!, 0), "a request without hash ids shares nothing");
});

test("loadgen - distinct block ids never give the same block (property)", (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 45 }), fc.integer({ min: 0, max: 2 ** 45 }), (a, b) => {
      fc.pre(a !== b);
      const pa = tokenIdPrompt(0, BLOCK_TOKENS, [a]);
      const pb = tokenIdPrompt(0, BLOCK_TOKENS, [b]);
      return pa.join(",") !== pb.join(",") && pa.every((x) => x >= 1000 && x < 29000);
    }),
  );
  t.pass();
});

test("loadgen - burstgpt parser reads seconds and token columns, names a bad row", async (t) => {
  const p = file("burst.csv", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n5,ChatGPT,472,18,490,Conversation log\n7.5,GPT-4,1087,0,1087,Conversation log\n");
  const w = await all(burstGptTrace(p));
  t.deepEqual(w.map((r) => [r.offsetMs, r.promptTokens, r.outputTokens]), [[0, 472, 18], [2500, 1087, 1]]);
  t.is((await all(burstGptTrace(p, { models: ["GPT-4"] }))).length, 1);
  const bad = file("burst-bad.csv", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n5,ChatGPT,x,18,490,Conversation log\n");
  t.regex((await t.throwsAsync(all(burstGptTrace(bad))))!.message, /burst-bad\.csv:2: Request tokens "x"/);
});

test("loadgen - synthetic classes stay inside the paper's cut points", async (t) => {
  for (const cls of ["short-short", "medium-long", "long-medium"]) {
    const w = await all(syntheticWorkload({ cls, rate: 200, durationS: 2, seed: 3 }));
    t.true(w.length > 300);
    t.true(w.every((r) => classify(r.promptTokens, r.outputTokens) === cls && r.workloadClass === cls), cls);
  }
  const mix = await all(syntheticWorkload({ cls: "mix", rate: 500, durationS: 2, seed: 3 }));
  t.is(new Set(mix.map((r) => r.workloadClass)).size, 9);
});

test("loadgen - synthetic arrivals hit their rate: poisson, gamma, constant and a ramp", async (t) => {
  const count = async (o: Parameters<typeof syntheticWorkload>[0]) => (await all(syntheticWorkload(o))).length;
  const poisson = await count({ cls: "short", rate: 100, durationS: 100, seed: 1 });
  t.true(Math.abs(poisson - 10_000) < 400, `poisson ${poisson}`); // 4 sd
  const gamma = await count({ cls: "short", rate: 100, durationS: 100, arrival: "gamma", cv: 2, seed: 1 });
  t.true(Math.abs(gamma - 10_000) < 800, `gamma ${gamma}`);
  t.is(await count({ cls: "short", rate: 10, durationS: 10, arrival: "constant" }), 100);
  const ramp = await all(syntheticWorkload({ cls: "short", rate: { from: 0, to: 200 }, durationS: 100, arrival: "constant" }));
  t.is(ramp.length, 10_000, "∫ rate dt = 10 000");
  const firstHalf = ramp.filter((r) => r.offsetMs < 50_000).length;
  t.is(firstHalf, 2500, "a linear ramp from 0 puts a quarter in the first half");
  const a = await all(syntheticWorkload({ cls: "mix", rate: 50, durationS: 5, seed: 9 }));
  t.deepEqual(a, await all(syntheticWorkload({ cls: "mix", rate: 50, durationS: 5, seed: 9 })), "reproducible from the seed");
});

test("loadgen - histogram quantiles are within 1% of the exact order statistic (property)", (t) => {
  fc.assert(
    fc.property(fc.array(fc.double({ min: 0.001, max: 1e6, noNaN: true }), { minLength: 1, maxLength: 500 }), fc.constantFrom(0.5, 0.9, 0.99, 1), (xs, q) => {
      const h = createHistogram(0.005);
      for (const x of xs) h.record(x);
      const sorted = [...xs].sort((a, b) => a - b);
      const exact = sorted[Math.max(1, Math.ceil(q * sorted.length)) - 1]!;
      return Math.abs(h.quantile(q) - exact) <= 0.01 * exact;
    }),
  );
  t.pass();
});
