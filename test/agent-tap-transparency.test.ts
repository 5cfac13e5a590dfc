import test, { type ExecutionContext } from "ava";
import OpenAI from "openai";
import { startRequestTap } from "../services/agent/request-tap.ts";
import { createWorkTracker } from "../services/agent/work-tracker.ts";
import { instanceEndpoints, startSimnode } from "../services/simnode/server.ts";
import { promptTokensOfChat, promptTokensOfCompletion } from "../services/simnode/openai.ts";
import { systemClock, type RequestEvent } from "../shared/mod.ts";

/**
 * The tap is invisible to a client: what the official `openai` client parses through the tap equals
 * what it parses direct, and the raw stream differs in nothing but transport framing, whatever the
 * client asked of usage, while the tap still records the request's tokens. Direct and through the
 * tap are two simulated nodes with the same seed, each sent the same requests in the same order, so
 * both answer alike (the same lengths, ids from the same x-request-id); only `created` (a wall-clock
 * second) may differ.
 */
const MODEL = "llama-3-8b";
type Endpoint = "chat" | "completions";
/** on/off/absent: include_usage true, false, no stream_options; continuous: vLLM's per-chunk usage too. */
type Usage = "on" | "off" | "absent" | "continuous";
const STREAM_OPTIONS: Record<Usage, Record<string, boolean> | undefined> = {
  on: { include_usage: true },
  off: { include_usage: false },
  absent: undefined,
  continuous: { include_usage: true, continuous_usage_stats: true },
};

interface Side {
  client: OpenAI;
  /** What the tap recorded (empty for the direct side). */
  events: RequestEvent[];
}

async function sides(t: ExecutionContext, continuousUsage: boolean): Promise<{ direct: Side; tapped: Side }> {
  const start = async () => {
    const sim = await startSimnode({ gpus: 1, tp: 1, model: MODEL, seed: 17, timeScale: 20 });
    t.teardown(() => sim.stop());
    return sim;
  };
  const [directSim, upstreamSim] = await Promise.all([start(), start()]);
  const inst = instanceEndpoints(upstreamSim)[0]!;
  const events: RequestEvent[] = [];
  const tap = await startRequestTap({ node: "n1", instance: inst, host: "127.0.0.1", port: 0, clock: systemClock(), tracker: createWorkTracker("n1", [inst]), emit: (e) => events.push(e), continuousUsage });
  t.teardown(() => tap.close());
  const client = (base: string) => new OpenAI({ apiKey: "none", baseURL: `${base}/v1`, maxRetries: 0 });
  // The direct side goes to the same pinned path the tap forwards to.
  return { direct: { client: client(`${directSim.url}/i/${inst.id}`), events: [] }, tapped: { client: client(tap.url), events } };
}

function params(endpoint: Endpoint, stream: boolean, usage: Usage) {
  const so = STREAM_OPTIONS[usage];
  const common = { model: MODEL, max_tokens: 12, stream, ...(so ? { stream_options: so } : {}) };
  return endpoint === "chat" ? { ...common, messages: [{ role: "user" as const, content: "How much energy does a token take?" }] } : { ...common, prompt: "How much energy does a token take?" };
}

/** One request through the client; its parsed result (chunks for a stream) or the error it threw. */
async function parsed(side: Side, endpoint: Endpoint, stream: boolean, usage: Usage, id: string): Promise<unknown> {
  const p = params(endpoint, stream, usage);
  const opts = { headers: { "x-request-id": id } };
  try {
    // The SDK's overloads type a request by its literal `stream`; the request is built at run time here.
    const result: unknown = endpoint === "chat" ? await side.client.chat.completions.create(p as never, opts) : await side.client.completions.create(p as never, opts);
    if (!stream) return withoutCreated(result);
    const chunks: unknown[] = [];
    for await (const c of result as AsyncIterable<unknown>) chunks.push(withoutCreated(c));
    return chunks;
  } catch (err) {
    if (!(err instanceof OpenAI.APIError)) throw err;
    return { status: err.status, error: err.error, requestId: err.headers?.get("x-request-id") };
  }
}

/** The same request's raw body, as `data:` payloads (`created` blanked), and its status. */
async function raw(side: Side, endpoint: Endpoint, stream: boolean, usage: Usage, id: string): Promise<{ status: number; data: string[] }> {
  const p = params(endpoint, stream, usage);
  const opts = { headers: { "x-request-id": id } };
  const res = await (endpoint === "chat" ? side.client.chat.completions.create(p as never, opts) : side.client.completions.create(p as never, opts)).asResponse().catch((err: unknown) => {
    if (err instanceof OpenAI.APIError) return err;
    throw err;
  });
  if (res instanceof OpenAI.APIError) return { status: res.status ?? 0, data: [JSON.stringify(res.error)] };
  const text = (await res.text()).replace(/"created":\d+/g, '"created":0');
  if (!stream) return { status: res.status, data: [text] };
  // Transport framing aside (how the bytes were split into writes and HTTP chunks), the events.
  return { status: res.status, data: text.split(/\r?\n\r?\n/).filter((e) => e.startsWith("data:")).map((e) => e.slice(5).trim()) };
}

function withoutCreated(x: unknown): unknown {
  return x && typeof x === "object" && "created" in x ? { ...x, created: 0 } : x;
}

const cases: [Endpoint, boolean, Usage][] = [];
for (const endpoint of ["chat", "completions"] as const) {
  for (const stream of [true, false]) for (const usage of ["on", "off", "absent", ...(stream ? (["continuous"] as const) : [])] as const) cases.push([endpoint, stream, usage]);
}

for (const continuousUsage of [true, false]) {
  for (const [endpoint, stream, usage] of cases) {
    const name = `${endpoint}, ${stream ? "stream" : "no stream"}, include_usage ${usage}${continuousUsage ? "" : ", tap with --no-continuous-usage"}`;
    test(`tap transparency - ${name}: the openai client gets through the tap what it gets direct, and the tap records the tokens`, async (t) => {
      const { direct, tapped } = await sides(t, continuousUsage);
      const id = `${endpoint}-${stream}-${usage}`;
      const want = await parsed(direct, endpoint, stream, usage, id);
      t.deepEqual(await parsed(tapped, endpoint, stream, usage, id), want, "parsed by the client");

      const wantRaw = await raw(direct, endpoint, stream, usage, `${id}-raw`);
      const gotRaw = await raw(tapped, endpoint, stream, usage, `${id}-raw`);
      t.deepEqual(gotRaw.data.map(decode), wantRaw.data.map(decode), "each data: event, decoded");
      t.deepEqual(gotRaw.data, wantRaw.data, "and byte for byte: the tap splices, it does not re-serialize");
      t.is(gotRaw.status, wantRaw.status);
      // vLLM refuses stream_options without a stream (the simulated node too): the refusal must pass alike.
      t.is(wantRaw.status, stream || usage === "absent" ? 200 : 400);

      // The record: what the server said of the first request's tokens, whatever the client saw.
      const end = tapped.events.find((e) => e.event === "end" && e.requestId === id);
      if (wantRaw.status !== 200) return t.like(end, { status: "error", httpStatus: wantRaw.status });
      const p = params(endpoint, stream, usage);
      const { prompt_tokens, completion_tokens } = usageOf(want, stream, "messages" in p ? promptTokensOfChat(p) : promptTokensOfCompletion(p));
      t.true(completion_tokens > 0);
      t.like(end, { status: "ok", httpStatus: 200, promptTokens: prompt_tokens, outputTokens: completion_tokens });
      if (stream) t.true(tapped.events.some((e) => e.event === "first_token" && e.requestId === id));
    });
  }
}

const decode = (d: string): unknown => (d === "[DONE]" ? d : JSON.parse(d));

/**
 * The request's usage as the server counts it: the response's, else a stream's token chunks and the
 * prompt as the simulated node counts it (the tap's record must match the server's even where the
 * client saw no usage).
 */
function usageOf(result: unknown, stream: boolean, promptTokens: number): { prompt_tokens: number; completion_tokens: number } {
  if (!stream) return (result as { usage: { prompt_tokens: number; completion_tokens: number } }).usage;
  const chunks = result as { choices: unknown[]; usage?: { prompt_tokens: number; completion_tokens: number } | null }[];
  const last = chunks.findLast((c) => c.usage);
  return last?.usage ?? { prompt_tokens: promptTokens, completion_tokens: chunks.filter((c) => c.choices.length > 0).length };
}
