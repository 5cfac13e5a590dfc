import test from "ava";
import { connect } from "@nats-io/transport-node";
import { startQueryService } from "../services/analyzer/query-service.ts";
import { sharedTestStack } from "./helpers/stack.ts";

/** Review: a bad or failing query-API request is answered with an error and the service lives on. */
const stack = sharedTestStack(test);

async function ask(nc: Awaited<ReturnType<typeof connect>>, body: string) {
  const m = await nc.request("joulestream.query.v1.summary", body, { timeout: 5000 });
  return { code: m.headers?.get("Nats-Service-Error-Code") ?? "", error: m.headers?.get("Nats-Service-Error") ?? "", data: new TextDecoder().decode(m.data) };
}

for (const [name, body, code] of [
  ["a schema error (node with a dot)", JSON.stringify({ node: "a.b" }), "400"],
  ["a time InfluxDB cannot parse (fromMs 1e21)", JSON.stringify({ fromMs: 1e21 }), "400"],
  ["not JSON", "{nope", "400"],
] as const) {
  test.serial(`query API - ${name} gets an error reply, and the service still answers afterwards`, async (t) => {
    const { natsUrl, influxUrl, database } = stack();
    const nc = await connect({ servers: natsUrl });
    t.teardown(() => nc.close());
    const svc = await startQueryService(nc, { url: influxUrl, database });
    t.teardown(() => svc.stop());
    const r = await ask(nc, body);
    t.log(r);
    t.is(r.code, code);
    const ok = await ask(nc, "{}");
    t.is(ok.code, "");
    t.true(Array.isArray(JSON.parse(ok.data).groups));
  });
}

test.serial("query API - an InfluxDB error (body ending in a newline) gets a 503 reply, and the process lives on", async (t) => {
  const { natsUrl } = stack();
  const { createServer } = await import("node:http");
  const http = createServer((_req, res) => res.writeHead(400, { "content-type": "application/json" }).end('{"error":"error parsing query"}\n'));
  await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
  t.teardown(() => http.close());
  const nc = await connect({ servers: natsUrl });
  t.teardown(() => nc.close());
  const svc = await startQueryService(nc, { url: `http://127.0.0.1:${(http.address() as { port: number }).port}`, database: "x" });
  t.teardown(() => svc.stop());
  const r = await ask(nc, "{}");
  t.is(r.code, "503");
  t.regex(r.error, /error parsing query/);
});

test.serial("query API - a run's measured and idle energy are its nodes' while it ran, not the whole database's", async (t) => {
  const { natsUrl, influxUrl, database } = stack();
  const t0 = 1_700_000_000_000;
  const lines = [
    // the run: two requests on n1 at t0+1 s (lasting 2 s) and t0+3 s (lasting 1 s); windows of 1 s on n1
    `request_energy,node=n1,instance=i0,model=m,workload_class=c,status=ok,run_id=runA energy_j=10,output_tokens=5i,prompt_tokens=5i,duration_ms=2000 ${(t0 + 1000) * 1e6}`,
    `request_energy,node=n1,instance=i0,model=m,workload_class=c,status=ok,run_id=runA energy_j=10,output_tokens=5i,prompt_tokens=5i,duration_ms=1000 ${(t0 + 3000) * 1e6}`,
    ...[1, 2, 3].map((s) => `node_energy,node=n1 measured_j=20,attributed_j=15,idle_j=5 ${(t0 + s * 1000) * 1e6}`),
    // not the run's: another node at the same time, and n1 an hour earlier
    `node_energy,node=n2 measured_j=1000,attributed_j=0,idle_j=1000 ${(t0 + 2000) * 1e6}`,
    `node_energy,node=n1 measured_j=5000,attributed_j=0,idle_j=5000 ${(t0 - 3_600_000) * 1e6}`,
  ];
  const res = await fetch(`${influxUrl}/write?db=${database}`, { method: "POST", body: lines.join("\n") });
  t.is(res.status, 204);
  const nc = await connect({ servers: natsUrl });
  t.teardown(() => nc.close());
  const svc = await startQueryService(nc, { url: influxUrl, database });
  t.teardown(() => svc.stop());
  const s = JSON.parse((await ask(nc, JSON.stringify({ runId: "runA" }))).data);
  t.is(s.groups[0].requests, 2);
  t.is(s.measuredJ, 60);
  t.is(s.idleJ, 15);
  t.is(s.idleShare, 0.25);
});

test.serial("query API - per class, energy per request and per token and latencies are the served requests'; refused and aborted ones are counted apart, with their energy", async (t) => {
  const { natsUrl, influxUrl, database } = stack();
  const t0 = 1_710_000_000_000;
  const at = (s: number) => (t0 + s * 1000) * 1e6;
  const req = (status: string, cls: string, fields: string, s: number) => `request_energy,node=n1,instance=i0,model=m,workload_class=${cls},status=${status},run_id=runQ ${fields} ${at(s)}`;
  const lines = [
    req("ok", "chat", "energy_j=10,output_tokens=4i,prompt_tokens=6i,ttft_ms=100,tpot_ms=20,e2e_ms=300,slo_met=true", 1),
    req("ok", "chat", "energy_j=20,output_tokens=6i,prompt_tokens=4i,ttft_ms=200,tpot_ms=30,e2e_ms=500,slo_met=false", 2),
    // A 400 for a prompt over the context: next to no energy, an instant answer.
    req("error", "chat", "energy_j=0.5,output_tokens=0i,prompt_tokens=0i,ttft_ms=5,e2e_ms=5,slo_met=false", 3),
    // The client gave up after 3 tokens.
    req("aborted", "chat", "energy_j=5,output_tokens=3i,prompt_tokens=8i,ttft_ms=10,tpot_ms=1,e2e_ms=40,slo_met=false", 4),
    // A class whose every request was refused.
    req("error", "batch", "energy_j=0.25,output_tokens=0i,prompt_tokens=0i", 5),
    req("error", "batch", "energy_j=0.25,output_tokens=0i,prompt_tokens=0i", 6),
  ];
  t.is((await fetch(`${influxUrl}/write?db=${database}`, { method: "POST", body: lines.join("\n") })).status, 204);
  const nc = await connect({ servers: natsUrl });
  t.teardown(() => nc.close());
  const svc = await startQueryService(nc, { url: influxUrl, database });
  t.teardown(() => svc.stop());
  const s = JSON.parse((await ask(nc, JSON.stringify({ runId: "runQ" }))).data) as import("../services/analyzer/query-service.ts").Summary;
  const chat = s.groups.find((g) => g.workloadClass === "chat")!;
  t.like(chat, {
    model: "m",
    requests: 2,
    energyJ: 30,
    outputTokens: 10,
    promptTokens: 10,
    jPerRequest: { mean: 15, p50: 10, p99: 20 },
    jPerOutputToken: 3,
    jPerToken: 1.5,
    ttftMs: { p50: 100, p99: 200 },
    tpotMs: { p50: 20, p99: 30 },
    e2eMs: { p50: 300, p99: 500 },
    refused: { requests: 1, energyJ: 0.5 },
    aborted: { requests: 1, energyJ: 5, outputTokens: 3 },
  });
  t.is(chat.sloAttainment, 0.25, "1 met of 4 with a load result: a refused or aborted request missed its SLO");
  const batch = s.groups.find((g) => g.workloadClass === "batch")!;
  t.like(batch, { requests: 0, energyJ: 0, jPerOutputToken: 0, ttftMs: { p50: null, p99: null }, refused: { requests: 2, energyJ: 0.5 }, aborted: { requests: 0, energyJ: 0, outputTokens: 0 }, sloAttainment: null });
  t.is(s.groups.length, 2, "one group per model and class, not per status");
});
