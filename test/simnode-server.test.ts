import test from "ava";
import { createServer } from "node:net";
import { startSimnode, type Simnode } from "../services/simnode/server.ts";
import { CHARS_PER_TOKEN, CHAT_TOKENS_PER_MESSAGE } from "../services/simnode/openai.ts";
import { parsePrometheusText } from "../services/agent/prometheus.ts";
import { until } from "./helpers/until.ts";

const post = (url: string, body: unknown, headers: Record<string, string> = {}) => fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) });

/** Response JSON, loosely typed: the assertions below are the schema. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const json = (res: Response): Promise<any> => res.json();

/** SSE `data:` payloads of a response body. */
async function sseEvents(res: Response): Promise<string[]> {
  const text = await res.text();
  return text.split("\n\n").filter((b) => b.startsWith("data: ")).map((b) => b.slice(6));
}

async function withSim(t: { teardown(fn: () => Promise<void>): void }, opts: Parameters<typeof startSimnode>[0] = {}): Promise<Simnode> {
  const sim = await startSimnode({ model: "llama-3-8b", gpus: 2, tp: 1, ...opts });
  t.teardown(() => sim.stop());
  return sim;
}

test("simnode server - streams one token per chunk with usage in every chunk, a final usage chunk and [DONE]", async (t) => {
  const sim = await withSim(t);
  const res = await post(`${sim.url}/v1/completions`, { prompt: Array.from({ length: 37 }, (_, i) => i), max_tokens: 12, ignore_eos: true, stream: true, stream_options: { include_usage: true, continuous_usage_stats: true } }, { "x-request-id": "req-42" });
  t.is(res.status, 200);
  t.is(res.headers.get("x-request-id"), "req-42");
  t.regex(res.headers.get("content-type") ?? "", /text\/event-stream/);
  const events = await sseEvents(res);
  t.is(events.at(-1), "[DONE]");
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
  const tokenChunks = chunks.filter((c) => c.choices.length > 0);
  t.is(tokenChunks.length, 12);
  tokenChunks.forEach((c, i) => {
    t.is(c.usage.completion_tokens, i + 1);
    t.is(c.usage.prompt_tokens, 37);
    t.true(c.choices[0].text.length > 0);
  });
  t.is(tokenChunks.at(-1).choices[0].finish_reason, "length");
  t.deepEqual(chunks.at(-1).usage, { prompt_tokens: 37, completion_tokens: 12, total_tokens: 49 });
  t.deepEqual(chunks.at(-1).choices, []);
});

test("simnode server - non-streaming chat counts text prompts at CHARS_PER_TOKEN and returns usage", async (t) => {
  const sim = await withSim(t);
  const content = "x".repeat(400);
  const res = await post(`${sim.url}/v1/chat/completions`, { messages: [{ role: "user", content }], max_tokens: 5, ignore_eos: true });
  const body = await json(res);
  t.is(res.status, 200);
  t.is(body.object, "chat.completion");
  t.deepEqual(body.usage, { prompt_tokens: 400 / CHARS_PER_TOKEN + CHAT_TOKENS_PER_MESSAGE, completion_tokens: 5, total_tokens: 400 / CHARS_PER_TOKEN + CHAT_TOKENS_PER_MESSAGE + 5 });
  t.is(body.choices[0].message.role, "assistant");
});

test("simnode server - without ignore_eos requests stop early, the same way for the same seed, never below min_tokens", async (t) => {
  const lengths = async (seed: number) => {
    // timeScale 50: simulated time runs 50× faster, so long generations take little wall time.
    const sim = await withSim(t, { seed, timeScale: 50 });
    const out: number[] = [];
    for (let i = 0; i < 6; i++) {
      const body = await json(await post(`${sim.url}/v1/completions`, { prompt: [1, 2, 3], max_tokens: 2000, min_tokens: 20 }));
      out.push(body.usage.completion_tokens);
    }
    await sim.stop();
    return out;
  };
  const a = await lengths(5);
  t.deepEqual(await lengths(5), a);
  t.true(a.every((n) => n >= 20 && n <= 2000));
  t.true(a.some((n) => n < 2000), "some request stopped before max_tokens");
  t.notDeepEqual(await lengths(6), a);
});

test("simnode server - /i/<instance>/v1 pins a request; unknown instances and oversize requests are refused", async (t) => {
  const sim = await withSim(t);
  t.deepEqual(sim.instances.map((i) => i.id), ["i0", "i1"]);
  const ok = await post(`${sim.url}/i/i1/v1/completions`, { prompt: [1], max_tokens: 2, ignore_eos: true });
  t.is(ok.status, 200);
  t.is((await post(`${sim.url}/i/i9/v1/completions`, { prompt: [1], max_tokens: 2 })).status, 404);
  const tooLong = await post(`${sim.url}/v1/completions`, { prompt: Array.from({ length: 8000 }, () => 1), max_tokens: 500 });
  t.is(tooLong.status, 400);
  t.regex((await json(tooLong)).error.message, /maximum context length is 8192/);
  t.is((await post(`${sim.url}/v1/completions`, { max_tokens: 2 })).status, 400);
  const models = await json(await fetch(`${sim.url}/v1/models`));
  t.is(models.data[0].id, "llama-3-8b");
  t.is((await fetch(`${sim.url}/health`)).status, 200);
});

test("simnode server - a model it does not serve is refused with vLLM's 404; its own name or none is served", async (t) => {
  const sim = await withSim(t);
  for (const path of ["/v1/completions", "/v1/chat/completions"]) {
    const body = path.includes("chat") ? { model: "gpt-4", messages: [{ role: "user", content: "hi" }], max_tokens: 2 } : { model: "gpt-4", prompt: "hi", max_tokens: 2, stream: true };
    const res = await post(`${sim.url}${path}`, body);
    t.is(res.status, 404, path);
    t.deepEqual(await json(res), { error: { message: "The model `gpt-4` does not exist.", type: "NotFoundError", param: "model", code: 404 } });
  }
  const own = await post(`${sim.url}/v1/completions`, { model: "llama-3-8b", prompt: "hi", max_tokens: 2 });
  t.is(own.status, 200);
  t.is((await json(own)).model, "llama-3-8b");
  const none = await post(`${sim.url}/v1/completions`, { prompt: "hi", max_tokens: 2 });
  t.is((await json(none)).model, "llama-3-8b");
});

test("simnode server - usage in a stream as vLLM decides it: per chunk only with include_usage, no `usage` key otherwise", async (t) => {
  const sim = await withSim(t);
  // What each stream_options gives: [content chunks with a usage object, content chunks with a `usage` key, a final usage-only chunk].
  const shape = async (streamOptions: unknown) => {
    const res = await post(`${sim.url}/v1/completions`, { prompt: [1, 2, 3], max_tokens: 4, ignore_eos: true, stream: true, ...(streamOptions === undefined ? {} : { stream_options: streamOptions }) });
    const chunks = (await sseEvents(res)).slice(0, -1).map((e) => JSON.parse(e));
    const content = chunks.filter((c) => c.choices.length > 0);
    t.is(content.length, 4);
    return [content.filter((c) => c.usage?.completion_tokens > 0).length, content.filter((c) => "usage" in c).length, chunks.filter((c) => c.choices.length === 0 && c.usage?.completion_tokens === 4).length];
  };
  t.deepEqual(await shape(undefined), [0, 0, 0]);
  t.deepEqual(await shape(null), [0, 0, 0]);
  t.deepEqual(await shape({ include_usage: true }), [0, 0, 1]);
  t.deepEqual(await shape({ include_usage: false, continuous_usage_stats: true }), [0, 0, 0], "continuous_usage_stats alone gives nothing");
  t.deepEqual(await shape({ include_usage: null, continuous_usage_stats: true }), [0, 0, 0]);
  t.deepEqual(await shape({ include_usage: true, continuous_usage_stats: true }), [4, 4, 1]);
  // vLLM's StreamOptions defaults include_usage to true when stream_options is given without it.
  t.deepEqual(await shape({}), [0, 0, 1]);
  t.deepEqual(await shape({ continuous_usage_stats: true }), [4, 4, 1]);
});

test("simnode server - stream_options without a stream is refused as vLLM refuses it; empty or null ones are not", async (t) => {
  const sim = await withSim(t);
  for (const so of [{ include_usage: true }, { include_usage: false }]) {
    const res = await post(`${sim.url}/v1/chat/completions`, { messages: [{ role: "user", content: "hi" }], max_tokens: 2, stream_options: so });
    t.is(res.status, 400);
    t.deepEqual(await json(res), { error: { message: "Stream options can only be defined when `stream=True`.", type: "BadRequestError", param: "stream_options", code: 400 } });
  }
  for (const so of [{}, null]) t.is((await post(`${sim.url}/v1/completions`, { prompt: "hi", max_tokens: 2, stream: false, stream_options: so })).status, 200);
});

test("simnode server - /metrics speaks dcgm-exporter: names, labels, HELP/TYPE, an energy counter that integrates power", async (t) => {
  const sim = await withSim(t, { hostname: "sim-host" });
  const scrape = async () => parsePrometheusText(await (await fetch(sim.metricsUrl)).text());
  const text = await (await fetch(sim.metricsUrl)).text();
  t.regex(text, /^# HELP DCGM_FI_DEV_POWER_USAGE Power draw \(in W\)\.$/m);
  t.regex(text, /^# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter$/m);
  t.regex(text, /^DCGM_FI_DEV_SM_CLOCK\{gpu="1",UUID="GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",device="nvidia1",modelName="NVIDIA H100 80GB HBM3",Hostname="sim-host"\} 1980$/m);
  const tBefore = sim.simNowMs();
  const before = await scrape();
  await post(`${sim.url}/i/i0/v1/completions`, { prompt: Array.from({ length: 2000 }, () => 7), max_tokens: 40, ignore_eos: true }).then(json);
  const tAfter0 = sim.simNowMs();
  const after = await scrape();
  const tAfter = sim.simNowMs();
  t.true(tAfter0 <= tAfter);
  const energy = (s: typeof before, gpu: string) => s.find((x) => x.name === "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" && x.labels.gpu === gpu)!.value;
  const busyJ = (energy(after, "0") - energy(before, "0")) / 1000;
  const idleJ = (energy(after, "1") - energy(before, "1")) / 1000;
  const dtS = (tAfter - tBefore) / 1000;
  t.true(idleJ > 0 && idleJ <= 75 * dtS + 1e-6, `idle GPU ${idleJ} J over ${dtS} s`);
  t.true(busyJ > idleJ * 1.5, `busy GPU ${busyJ} J vs idle ${idleJ} J`);
  const power = after.find((x) => x.name === "DCGM_FI_DEV_POWER_USAGE" && x.labels.gpu === "0")!.value;
  t.true(power > 75 && power <= 700);
});

test("simnode server - /i/<id>/metrics is that instance's vLLM server's: running and waiting follow its queue, an aborted request leaves it, and /metrics stays DCGM's", async (t) => {
  const sim = await withSim(t);
  await post(`${sim.url}/admin/config`, { maxBatch: 1 });
  const gauges = async (id: string) => {
    const res = await fetch(`${sim.url}/i/${id}/metrics`);
    t.regex(res.headers.get("content-type") ?? "", /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const v = (name: string) => parsePrometheusText(text).find((s) => s.name === name && s.labels.model_name === "llama-3-8b" && s.labels.engine === "0")?.value;
    return { text, running: v("vllm:num_requests_running"), waiting: v("vllm:num_requests_waiting"), kv: v("vllm:kv_cache_usage_perc") };
  };
  const idle = await gauges("i0");
  t.deepEqual([idle.running, idle.waiting, idle.kv], [0, 0, 0]);
  t.regex(idle.text, /^# TYPE vllm:num_requests_waiting gauge\nvllm:num_requests_waiting\{engine="0",model_name="llama-3-8b"\} 0\.0$/m);
  // One batch slot on i0: the first request runs, the two after it queue. Long enough to still run when scraped.
  const aborts = [0, 1, 2].map(() => new AbortController());
  const streams = await Promise.all(aborts.map((a) => fetch(`${sim.url}/i/i0/v1/completions`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: [1, 2, 3], max_tokens: 4000, ignore_eos: true, stream: true }), signal: a.signal })));
  t.deepEqual(streams.map((r) => r.status), [200, 200, 200]);
  const busy = await gauges("i0");
  t.deepEqual([busy.running, busy.waiting], [1, 2]);
  t.true(busy.kv! > 0 && busy.kv! <= 1, `kv usage ${busy.kv}`);
  const other = await gauges("i1");
  t.deepEqual([other.running, other.waiting], [0, 0]);
  // The queued ones' clients go: vLLM drops an aborted request from its queue.
  aborts[2]!.abort();
  aborts[1]!.abort();
  await until(async () => (await gauges("i0")).waiting === 0, 5000, "the aborted requests to leave the queue");
  t.is((await gauges("i0")).running, 1);
  aborts[0]!.abort();
  await until(async () => (await gauges("i0")).running === 0, 5000, "the running request to end");
  t.is((await fetch(`${sim.url}/i/nope/metrics`)).status, 404);
  t.regex(await (await fetch(sim.metricsUrl)).text(), /^DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION\{gpu="0"/m);
});

test("simnode server - admin endpoint snaps clocks to supported steps, validates limits, resets, and changes TP when idle", async (t) => {
  const sim = await withSim(t, { model: "llama-2-70b", gpus: 8, tp: 4 });
  const set = async (body: unknown) => post(`${sim.url}/admin/config`, body);
  const r1 = await json(await set({ smClockMhz: 1601, maxBatch: 32 }));
  t.is(r1.smClockMhz, 1605);
  t.is(r1.maxBatch, 32);
  const metrics = await (await fetch(sim.metricsUrl)).text();
  t.regex(metrics, /DCGM_FI_DEV_SM_CLOCK\{gpu="0"[^}]*\} 1605/);
  const bad = await set({ powerLimitW: 50 });
  t.is(bad.status, 400);
  t.is((await json(bad)).key, "powerLimitW");
  t.is((await set({ bogus: 1 })).status, 400);
  const reset = await json(await post(`${sim.url}/admin/reset-clocks`, {}));
  t.is(reset.smClockMhz, 1980);
  t.is(reset.powerLimitW, 700);
  const tp8 = await json(await set({ tp: 8 }));
  t.is(tp8.instances.length, 1);
  t.deepEqual(sim.instances, [{ id: "i0", gpus: [0, 1, 2, 3, 4, 5, 6, 7], model: "llama-2-70b" }]);
});

test("simnode server - stop is idempotent, ends streams in flight and frees the port", async (t) => {
  const sim = await startSimnode({ model: "llama-3-8b", gpus: 1 });
  const port = Number(new URL(sim.url).port);
  const res = await post(`${sim.url}/v1/completions`, { prompt: [1], max_tokens: 4000, ignore_eos: true, stream: true });
  const reading = res.text().catch(() => "aborted");
  await Promise.all([sim.stop(), sim.stop()]);
  await reading;
  await new Promise<void>((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(port, "127.0.0.1", () => s.close(() => resolve()));
  });
  t.pass();
});
