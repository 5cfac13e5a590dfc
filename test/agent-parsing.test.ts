import test from "ava";
import { parsePrometheusText } from "../services/agent/prometheus.ts";
import { createSseCounter } from "../services/agent/sse-counter.ts";
import { createUsageFilter, usageAsked, usageMember, usageStrip } from "../services/agent/usage-filter.ts";
import { withUsageOptions } from "../services/agent/tap-http.ts";
import { createWorkTracker } from "../services/agent/work-tracker.ts";
import { parseInstance, parseGpuList } from "../services/agent/instances.ts";
import { ConfigError } from "../shared/mod.ts";

const DCGM = `# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).
# TYPE DCGM_FI_DEV_POWER_USAGE gauge
DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-aaa",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="h"} 312.5
DCGM_FI_DEV_POWER_USAGE{gpu="1",UUID="GPU-bbb",device="nvidia1",modelName="NVIDIA H100 80GB HBM3",Hostname="h"} 99
# TYPE DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION counter
DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{gpu="0",UUID="GPU-aaa",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="h"} 123456789
`;

test("prometheus - parses dcgm-exporter lines with their labels", (t) => {
  const s = parsePrometheusText(DCGM);
  t.is(s.length, 3);
  t.deepEqual(s[0], { name: "DCGM_FI_DEV_POWER_USAGE", labels: { gpu: "0", UUID: "GPU-aaa", device: "nvidia0", modelName: "NVIDIA H100 80GB HBM3", Hostname: "h" }, value: 312.5 });
  t.is(s[2]!.value, 123456789);
});

test("prometheus - escaped label values and timestamps", (t) => {
  const s = parsePrometheusText('m{a="x\\"y"} 1 1700000000000\n');
  t.deepEqual(s, [{ name: "m", labels: { a: 'x"y' }, value: 1 }]);
});

const sse = (o: unknown) => Buffer.from(`data: ${JSON.stringify(o)}\n\n`);

test("prometheus - an OpenMetrics exemplar after the value is not read as the value; a '}' inside a quoted label is kept", (t) => {
  const [s] = parsePrometheusText('DCGM_FI_DEV_POWER_USAGE{gpu="0",UUID="GPU-0"} 300 # {trace_id="abc"} 5 1700000000.1\r\n');
  t.deepEqual(s, { name: "DCGM_FI_DEV_POWER_USAGE", labels: { gpu: "0", UUID: "GPU-0" }, value: 300 });
  const [u] = parsePrometheusText('DCGM_FI_DEV_POWER_USAGE{gpu="1",modelName="a} \\"b\\""} 1.5e+02 1700000000000');
  t.deepEqual(u, { name: "DCGM_FI_DEV_POWER_USAGE", labels: { gpu: "1", modelName: 'a} "b"' }, value: 150 });
});

test("sse counter - one token per content chunk, the first usage object reconciles", (t) => {
  const c = createSseCounter();
  t.is(c.push(sse({ choices: [{ delta: { role: "assistant" } }] })).newTokens, 0);
  t.is(c.push(Buffer.concat([sse({ choices: [{ delta: { content: "a" } }] }), sse({ choices: [{ delta: { content: "b" } }] })])).newTokens, 2);
  // Final usage says 3: one token was in a chunk we could not see as one (e.g. two tokens in one chunk).
  const p = c.push(sse({ choices: [], usage: { prompt_tokens: 11, completion_tokens: 3 } }));
  t.is(p.newTokens, 1);
  t.is(p.promptTokens, 11);
  t.is(c.outputTokens, 3);
});

test("sse counter - events that are not objects (data: null, choices: [null]) are skipped, not thrown on; an error event is kept", (t) => {
  const c = createSseCounter();
  const lines = ["null", "5", '"x"', "[]", '{"choices":[null]}', '{"choices":null}', '{"choices":{"text":"a"}}', '{"usage":null,"choices":[{"text":"a"}]}'];
  for (const l of lines) t.notThrows(() => c.push(Buffer.from(`data: ${l}\n\n`)), l);
  t.is(c.outputTokens, 1, "only the real token");
  t.is(c.error, undefined);
  c.push(Buffer.from('data: {"error":{"object":"error","message":"CUDA out of memory","type":"InternalServerError","code":500}}\n\n'));
  t.is(c.error, "CUDA out of memory");
  const d = createSseCounter();
  d.push(Buffer.from('data: {"error":"model overloaded"}\n\n'));
  t.is(d.error, "model overloaded", "TGI's shape");
});

test("sse counter - per-chunk usage (continuous_usage_stats) is exact and not double counted", (t) => {
  const c = createSseCounter();
  let n = 0;
  for (let i = 1; i <= 5; i++) n += c.push(sse({ choices: [{ text: "x" }], usage: { prompt_tokens: 7, completion_tokens: i * 2 } })).newTokens;
  c.push(Buffer.from("data: [DONE]\n\n"));
  t.is(n, 10);
  t.is(c.outputTokens, 10);
  t.true(c.done);
});

test("sse counter - usage with nested details, spaces or null is read right, fast path or not", (t) => {
  const c = createSseCounter();
  c.push(sse({ choices: [{ delta: { content: "a" } }], usage: null }));
  c.push(Buffer.from('data: {"choices":[{"delta":{"content":"b"}}],"usage": {"prompt_tokens": 9, "completion_tokens": 2}}\n\n'));
  c.push(sse({ choices: [{ delta: { content: "c" } }], usage: { prompt_tokens_details: { cached_tokens: 4 }, prompt_tokens: 9, completion_tokens: 3, completion_tokens_details: { reasoning_tokens: 1 } } }));
  c.push(sse({ choices: [{ delta: { content: "d" } }], usage: { completion_tokens_details: { reasoning_tokens: 1 }, prompt_tokens: 9, completion_tokens: 4 } }));
  t.is(c.outputTokens, 4);
  t.is(c.promptTokens, 9);
  t.is(c.usageCompletionTokens, 4);
});

test("sse counter - the same counts wherever the reads split the stream, usage in place or parsed, UTF-8 split", (t) => {
  const ev = (o: unknown) => `data: ${JSON.stringify(o)}\n\n`;
  const streams = [
    // vLLM with continuous usage: read in place.
    [1, 2, 3].map((i) => ev({ choices: [{ text: "é€" }], usage: { prompt_tokens: 11, completion_tokens: i } })).join("") + "data: [DONE]\n\n",
    // No per-chunk usage: each event parsed, the final usage reconciles.
    ["日本", "語", ""].map((x) => ev({ choices: [{ delta: { content: x } }] })).join("") + ev({ choices: [], usage: { prompt_tokens: 11, completion_tokens: 2 } }) + "data: [DONE]\r\n\r\n",
  ];
  for (const text of streams) {
    const bytes = Buffer.from(text);
    const whole = createSseCounter();
    whole.push(bytes);
    t.true(whole.done);
    for (let a = 0; a <= bytes.length; a++) {
      const c = createSseCounter();
      let seen = c.push(bytes.subarray(0, a)).newTokens;
      seen += c.push(bytes.subarray(a)).newTokens;
      if (c.outputTokens !== whole.outputTokens || c.promptTokens !== 11 || !c.done || seen !== whole.outputTokens) {
        return t.fail(`split at ${a}: ${c.outputTokens} tokens (${seen} new), prompt ${c.promptTokens}, done ${c.done}`);
      }
    }
  }
  t.pass();
});

test("sse counter - events split across TCP chunks", (t) => {
  const c = createSseCounter();
  const whole = sse({ choices: [{ text: "hello" }] });
  t.is(c.push(whole.subarray(0, 9)).newTokens, 0);
  t.is(c.push(whole.subarray(9)).newTokens, 1);
});

const DROP_USAGE_ONLY = { usageOnly: true, chunkUsage: false };

test("usage filter - drops only the usage-only event, wherever the server's reads split the stream", (t) => {
  for (const nl of ["\n", "\r\n"]) {
    const ev = (data: string) => `data: ${data}${nl}${nl}`;
    const tokens = [1, 2, 3].map((i) => ev(JSON.stringify({ id: "c", choices: [{ index: 0, text: `t${i}` }], usage: { prompt_tokens: 4, completion_tokens: i } })));
    const usage = ev(JSON.stringify({ id: "c", choices: [], usage: { prompt_tokens: 4, completion_tokens: 3 } }));
    const stream = Buffer.from(tokens.join("") + usage + ev("[DONE]"));
    const want = tokens.join("") + ev("[DONE]");
    // Every single split point, and every pair of split points.
    for (let a = 0; a <= stream.length; a++) {
      for (let b = a; b <= stream.length; b += a % 7 === 0 ? 1 : 13) {
        const f = createUsageFilter(DROP_USAGE_ONLY);
        const out = [stream.subarray(0, a), stream.subarray(a, b), stream.subarray(b)].flatMap((c) => f.push(c)).concat(f.end()).map(String).join("");
        if (out !== want) return t.fail(`split at ${a},${b} (${JSON.stringify(nl)}): ${JSON.stringify(out)}`);
      }
    }
    // Whole events with no usage-only one go through as the same buffer.
    const whole = Buffer.from(tokens[0]!);
    t.deepEqual(createUsageFilter(DROP_USAGE_ONLY).push(whole), [whole]);
    t.is(createUsageFilter(DROP_USAGE_ONLY).push(whole)[0], whole, "the same buffer, not a copy");
  }
  t.pass();
});

test("usage filter - takes usage out of every chunk and drops the usage-only one, wherever the reads split the stream; the rest byte for byte", (t) => {
  for (const nl of ["\n", "\r\n"]) {
    const ev = (data: string) => `data: ${data}${nl}${nl}`;
    // As vLLM writes them with continuous_usage_stats: usage last, after choices.
    const chunk = (i: number, usage: boolean) => `{"id":"c","object":"text_completion","created":1,"model":"m","choices":[{"index":0,"text":"t\\"usage\\":{${i}}","logprobs":null,"finish_reason":null}]${usage ? `,"usage":{"prompt_tokens":4,"total_tokens":${4 + i},"completion_tokens":${i},"prompt_tokens_details":null}` : ""}}`;
    const final = '{"id":"c","object":"text_completion","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":4,"total_tokens":7,"completion_tokens":3}}';
    const stream = Buffer.from([1, 2, 3].map((i) => ev(chunk(i, true))).join("") + ev(final) + ev("[DONE]"));
    const plain = [1, 2, 3].map((i) => ev(chunk(i, false))).join("");
    for (const [strip, want] of [[{ usageOnly: true, chunkUsage: true }, plain + ev("[DONE]")], [{ usageOnly: false, chunkUsage: true }, plain + ev(final) + ev("[DONE]")]] as const) {
      for (let a = 0; a <= stream.length; a++) {
        for (let b = a; b <= stream.length; b += a % 5 === 0 ? 1 : 17) {
          const f = createUsageFilter(strip);
          const parts = [stream.subarray(0, a), stream.subarray(a, b), stream.subarray(b)].map((c) => f.push(c));
          if (parts.some((p) => p.length > 1)) return t.fail(`split at ${a},${b}: more than one write for a read`);
          const out = parts.flat().concat(f.end()).map(String).join("");
          if (out !== want) return t.fail(`split at ${a},${b} (${JSON.stringify(strip)}, ${JSON.stringify(nl)}): ${JSON.stringify(out)}`);
        }
      }
    }
  }
  t.pass();
});

test("usage filter - only the top-level usage member goes, with its comma, null or object, first, last or alone", (t) => {
  const strip = (json: string) => {
    const event = Buffer.from(`data: ${json}\n\n`);
    const cut = usageMember(event);
    return cut ? Buffer.concat([event.subarray(0, cut[0]), event.subarray(cut[1])]).toString().slice(6, -2) : undefined;
  };
  t.is(strip('{"a":1,"usage":{"x":{"y":[1,{"z":2}]}}}'), '{"a":1}');
  t.is(strip('{"usage":null,"a":1}'), '{"a":1}');
  t.is(strip('{"a":1,"usage":null,"b":2}'), '{"a":1,"b":2}');
  t.is(strip('{"usage":{"p":1}}'), "{}");
  t.is(strip('{"a": 1, "usage": {"p": 1}, "b": [2]}'), '{"a": 1, "b": [2]}', "Python's json.dumps spacing");
  t.is(strip('{"a":{"usage":1},"b":"\\"usage\\":1"}'), undefined, "nested, or inside a string: not the chunk's usage");
  t.is(strip('{"a":"x\\\\","usage":2}'), '{"a":"x\\\\"}', "a string ending in a backslash");
  t.is(strip('{"a":{"b":1,"usage":2}}'), undefined, "last, but in a nested object");
  t.is(strip("[1]"), undefined);
  t.is(strip('{"a":1,"usage":{"p":'), undefined, "a broken event passes as it is");
});

test("usage options - what a client asked for, read as vLLM reads it, decides what the tap takes out", (t) => {
  t.deepEqual(usageAsked(undefined), { include: false, continuous: false });
  t.deepEqual(usageAsked(null), { include: false, continuous: false });
  t.deepEqual(usageAsked({}), { include: true, continuous: false }, "vLLM's StreamOptions: include_usage defaults to true");
  t.deepEqual(usageAsked({ include_usage: false, continuous_usage_stats: true }), { include: false, continuous: false });
  t.deepEqual(usageAsked({ include_usage: null }), { include: false, continuous: false });
  t.deepEqual(usageAsked({ include_usage: true, continuous_usage_stats: true }), { include: true, continuous: true });
  t.is(usageAsked("yes"), undefined);
  t.deepEqual(usageStrip({ include: false, continuous: false }, true), { usageOnly: true, chunkUsage: true });
  t.deepEqual(usageStrip({ include: false, continuous: false }, false), { usageOnly: true, chunkUsage: true });
  t.deepEqual(usageStrip({ include: true, continuous: false }, true), { usageOnly: false, chunkUsage: true });
  t.is(usageStrip({ include: true, continuous: false }, false), undefined, "the tap added nothing");
  t.is(usageStrip({ include: true, continuous: true }, true), undefined);
});

test("usage filter and counter - a line that never ends is passed on (filter) and given up on (counter), not held", (t) => {
  const f = createUsageFilter(DROP_USAGE_ONLY);
  const c = createSseCounter();
  const piece = Buffer.alloc(1024 * 1024, 0x61); // 1 MiB of "a", no newline
  let passed = 0;
  for (let i = 0; i < 6; i++) {
    for (const part of f.push(piece)) passed += part.length;
    c.push(piece);
  }
  t.true(passed >= 5 * piece.length, `passed ${passed} bytes of ${6 * piece.length}`);
  c.push(Buffer.from('\ndata: {"choices":[{"text":"x"}]}\n\n'));
  t.is(c.outputTokens, 1);
});

test("usage options - spliced into the body as its first key, the rest byte for byte", (t) => {
  const body = Buffer.from(' \n{"model":"m","stream":true,"prompt":"a \\"quoted\\" {prompt}"}');
  const out = withUsageOptions(body, { include_usage: true, continuous_usage_stats: true });
  t.deepEqual(JSON.parse(out.toString()), { stream_options: { include_usage: true, continuous_usage_stats: true }, model: "m", stream: true, prompt: 'a "quoted" {prompt}' });
  t.true(out.toString().endsWith(body.toString().slice(body.indexOf("{") + 1)));
});

test("work tracker - every instance gets a window, tokens land in the window they happened in", (t) => {
  const w = createWorkTracker("n1", [
    { id: "a", upstream: "http://x", gpus: [0, 1] },
    { id: "b", upstream: "http://y", gpus: [2] },
  ]);
  w.started("a", "r1");
  w.prefill("a", "r1", 100);
  w.decode("a", "r1", 3);
  const first = w.closeWindow(0, 1000);
  t.is(first.length, 2);
  // With the contexts the cost-aware split uses: prompt positions 0…99, decodes at contexts 101…103.
  t.deepEqual(first[0]!.requests, [{ requestId: "r1", prefillTokens: 100, decodeTokens: 3, prefillCtxTokens: 4950, decodeCtxTokens: 306 }]);
  t.is(first[0]!.inFlight, 1);
  t.deepEqual(first[1]!.requests, []);
  w.decode("a", "r1", 2);
  w.ended("a", "r1");
  const second = w.closeWindow(1000, 2000);
  t.deepEqual(second[0]!.requests, [{ requestId: "r1", prefillTokens: 0, decodeTokens: 2, decodeCtxTokens: 104 + 105 }]);
  t.is(second[0]!.inFlight, 0);
});

test("instances - --instance specs parse, and errors name the key", (t) => {
  t.deepEqual(parseInstance("id=tp4a,listen=0.0.0.0:9001,upstream=http://127.0.0.1:8001,gpus=0-3,model=llama"), {
    id: "tp4a", listen: "0.0.0.0:9001", upstream: "http://127.0.0.1:8001", gpus: [0, 1, 2, 3], model: "llama",
  });
  t.deepEqual(parseGpuList("0,2,4-5", "g"), [0, 2, 4, 5]);
  const e = t.throws(() => parseInstance("id=a,gpus=0"), { instanceOf: ConfigError });
  t.regex(e!.message, /upstream/);
  t.throws(() => parseInstance("id=a.b,upstream=http://x"), { instanceOf: ConfigError });
  t.throws(() => parseGpuList("3-1", "g"), { instanceOf: ConfigError });
});
