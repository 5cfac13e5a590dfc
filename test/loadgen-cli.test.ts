import test from "ava";
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { azureTrace, mooncakeTrace } from "../services/loadgen/mod.ts";
import { startEchoServer } from "./helpers/echo-server.ts";
import { pause } from "./helpers/until.ts";
import { TraceError } from "../services/loadgen/trace-error.ts";
import { detectFormat, guessFormat } from "../services/loadgen/traces.ts";
import { waitUntil } from "../services/loadgen/wait.ts";
import type { WorkloadRequest } from "../services/loadgen/workload.ts";

/**
 * `joulestream load` as a user meets it with traces it has not seen: what it says about bad rows,
 * empty workloads, paths that are wrong and options that would be ignored.
 */
const bin = fileURLToPath(new URL("../bin/joulestream.mjs", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "loadgen-cli-"));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));
const HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n";
const file = (name: string, text: string) => {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
};
const load = (args: string[], cwd = dir) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(process.execPath, [bin, "load", ...args], { cwd, timeout: 60_000 }, (err, stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
const all = async (it: AsyncIterable<WorkloadRequest>) => {
  const out: WorkloadRequest[] = [];
  for await (const w of it) out.push(w);
  return out;
};

test("load cli - --lenient names every row it skips, with file and line, and counts them", async (t) => {
  const echo = await startEchoServer({ itlMs: 0 });
  t.teardown(() => echo.stop());
  const trace = file("bad.csv", HEADER + "2024-05-10 00:00:00+00:00,10,2\nnot a time,5,5\n2024-05-10 00:00:00.1+00:00,-3,2\n2024-05-10 00:00:00.2+00:00,7,x\n2024-05-10 00:00:00.3+00:00,12,3\n");
  const r = await load(["--trace", trace, "--lenient", "--target", echo.url]);
  t.is(r.code, 0, r.stderr);
  t.is(echo.received.length, 2);
  for (const line of [3, 4, 5]) t.regex(r.stderr, new RegExp(`skipped .*bad\\.csv:${line}`), `line ${line}`);
  t.regex(r.stderr, /3 bad trace row\(s\) skipped/);
});

test("load cli - a strict replay finds a bad row anywhere in what it will send before it sends anything", async (t) => {
  const echo = await startEchoServer({ itlMs: 0 });
  t.teardown(() => echo.stop());
  const rows = Array.from({ length: 300 }, (_, i) => (i === 250 ? "2024-05-10 00:00:99+00:00,5,5" : `2024-05-10 00:00:00.${String(i).padStart(3, "0")}+00:00,${10 + i},2`));
  const trace = file("late.csv", HEADER + rows.join("\n") + "\n");
  const out = join(dir, "late-results.jsonl");
  const r = await load(["--trace", trace, "--speedup", "100", "--target", echo.url, "--out", out]);
  t.not(r.code, 0);
  t.regex(r.stderr, /late\.csv:252: TIMESTAMP/);
  t.is(echo.received.length, 0, "nothing sent");
  t.throws(() => readFileSync(out), undefined, "--out not opened");
  const window = await load(["--trace", trace, "--window", "200", "--speedup", "100", "--target", echo.url]);
  t.is(window.code, 0, "rows past the --window are not read, so not checked");
  t.is(echo.received.length, 200);
});

test("load cli - a workload with no requests is a failure, said plainly", async (t) => {
  const echo = await startEchoServer({ itlMs: 0 });
  t.teardown(() => echo.stop());
  const r = await load(["--trace", file("empty.csv", HEADER), "--target", echo.url]);
  t.is(r.code, 3);
  t.regex(r.stderr, /no requests .*empty\.csv: no rows/);
});

test("load cli - a wrong --trace path is a config error that leaves an existing --out file alone; a relative path is resolved", async (t) => {
  const out = file("results.jsonl", '{"earlier":"run"}\n');
  const missing = await load(["--trace", "typo.csv", "--out", out, "--target", "http://127.0.0.1:9"]);
  t.is(missing.code, 2);
  t.regex(missing.stderr, /--trace: cannot read typo\.csv: no such file/);
  t.notRegex(missing.stderr, /\n\s+at /, "no stack trace");
  t.is(readFileSync(out, "utf8"), '{"earlier":"run"}\n');
  const notFile = await load(["--trace", dir, "--target", "http://127.0.0.1:9"]);
  t.is(notFile.code, 2);
  t.regex(notFile.stderr, /is not a file/);
  const echo = await startEchoServer({ itlMs: 0 });
  t.teardown(() => echo.stop());
  file("rel.csv", HEADER + "2024-05-10 00:00:00+00:00,10,2\n");
  const rel = await load(["--trace", "rel.csv", "--target", echo.url], dir);
  t.is(rel.code, 0, rel.stderr);
});

test("load cli - options of the other kind of source are refused, not silently ignored", async (t) => {
  const trace = file("one.csv", HEADER + "2024-05-10 00:00:00+00:00,10,2\n");
  const r = await load(["--trace", trace, "--duration", "5", "--target", "http://127.0.0.1:9"]);
  t.is(r.code, 2);
  t.regex(r.stderr, /--duration is for synthetic --workload runs; with --trace use --window/);
  const s = await load(["--workload", "short-short", "--rate", "1", "--duration", "1", "--speedup", "2", "--target", "http://127.0.0.1:9"]);
  t.is(s.code, 2);
  t.regex(s.stderr, /--speedup is for --trace replays/);
});

test("loadgen - the format comes from the file's name, not its directory", (t) => {
  t.is(guessFormat("/data/bursty-runs/AzureLLMInferenceTrace_code.csv"), "azure");
  t.is(guessFormat("/data/x/BurstGPT_1.csv"), "burstgpt");
});

test("loadgen - a 0-token prompt asks for 1 (servers refuse an empty prompt); an absurd prompt is a bad row, named", async (t) => {
  const p = file("z.csv", HEADER + "2024-05-10 00:00:00+00:00,0,0\n2024-05-10 00:00:01+00:00,2000000000,3\n");
  const err = await t.throwsAsync(all(azureTrace(p)), { instanceOf: TraceError });
  t.is(err!.line, 3);
  const skipped: TraceError[] = [];
  const w = await all(azureTrace(p, { lenient: true, onSkip: (e) => skipped.push(e) }));
  t.deepEqual(w.map((r) => [r.promptTokens, r.outputTokens]), [[1, 1]]);
  t.is(skipped.length, 1);
});

test("loadgen - a wait past setTimeout's 24.8-day limit neither spins nor warns", async (t) => {
  const warnings: string[] = [];
  const onWarn = (w: Error) => warnings.push(w.name);
  process.on("warning", onWarn);
  const ac = new AbortController();
  const p = waitUntil({ nowMs: () => Date.now() }, Date.now() + 40 * 86_400_000, ac.signal);
  // Time for nothing to happen: an overflowed timer (1 ms) would have fired, warned and re-armed by now.
  await pause(50);
  ac.abort();
  await p;
  process.off("warning", onWarn);
  t.deepEqual(warnings, []);
});

test("loadgen - a Mooncake file that is a JSON array, or rows missing fields, are named for what they are", async (t) => {
  const arr = file("array.json", '[{"timestamp": 0, "input_length": 5, "output_length": 2}]\n');
  const e1 = await t.throwsAsync(all(mooncakeTrace(arr, { lenient: true })), { instanceOf: TraceError });
  t.regex(e1!.message, /a JSON array, not JSON lines/);
  const miss = file("miss.jsonl", '{"timestamp": 0, "input_len": 5, "output_length": 2}\n');
  const e2 = await t.throwsAsync(all(mooncakeTrace(miss)), { instanceOf: TraceError });
  t.regex(e2!.message, /missing input_length \(have timestamp, input_len, output_length\)/);
});

test("loadgen - the format is read from the file's first line where it tells, whatever the file is called", (t) => {
  t.is(detectFormat(file("mytrace.csv", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n5,ChatGPT,10,2,12,Conversation log\n")), "burstgpt");
  t.is(detectFormat(file("burst-of-code.csv", "\uFEFFTIMESTAMP,ContextTokens,GeneratedTokens\r\n")), "azure");
  t.is(detectFormat(file("rows.txt", '{"timestamp": 0, "input_length": 1, "output_length": 1}\n')), "mooncake");
  t.is(detectFormat(file("other.csv", "a,b,c\n")), "azure", "no telling header: the name decides");
});
