import test from "ava";
import { startSimnode } from "../services/simnode/server.ts";
import { until } from "./helpers/until.ts";

const post = (url: string, body: unknown, signal?: AbortSignal) => fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body), ...(signal ? { signal } : {}) });

test("simnode - a chat prompt that fills the context without max_tokens is a 400, not a crash", async (t) => {
  const sim = await startSimnode({ gpus: 4, tp: 4 });
  t.teardown(() => sim.stop());
  for (const content of ["a".repeat(20_000), "a".repeat(4 * 4092)]) {
    for (const extra of [{}, { ignore_eos: true }]) {
      const r = await post(`${sim.url}/v1/chat/completions`, { messages: [{ role: "user", content }], ...extra });
      t.is(r.status, 400, await r.text());
    }
  }
  t.is((await fetch(`${sim.url}/health`)).status, 200, "still serving");
});

test("simnode - a client that disconnects mid-stream frees its batch slot and KV", async (t) => {
  const sim = await startSimnode({ gpus: 4, tp: 4, maxBatch: 2 });
  t.teardown(() => sim.stop());
  const aborts = [new AbortController(), new AbortController()];
  await Promise.all(aborts.map(async (ac) => {
    const r = await post(`${sim.url}/v1/completions`, { prompt: "hi", max_tokens: 3000, ignore_eos: true, stream: true }, ac.signal);
    await r.body!.getReader().read();
  }));
  t.is(sim.node.instances[0]!.engine.running, 2);
  for (const ac of aborts) ac.abort();
  // The server sees each client go when its socket closes.
  await until(() => sim.node.instances[0]!.engine.running === 0, 5000, "both aborted requests cancelled");
  t.is(sim.node.instances[0]!.engine.running, 0);
  t.is(sim.node.instances[0]!.engine.kvUsedTokens, 0);
  const t0 = performance.now();
  const r = await post(`${sim.url}/v1/completions`, { prompt: "hi", max_tokens: 2 });
  t.is(r.status, 200);
  t.true(performance.now() - t0 < 2000, "served at once, not after the abandoned 3000-token requests");
});
