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
