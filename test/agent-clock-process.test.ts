import test from "ava";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { agentProcessBench } from "./helpers/agent-process.ts";
import { until, untilSaid } from "./helpers/until.ts";

const bin = fileURLToPath(new URL("../bin/joulestream.mjs", import.meta.url));

async function setup(t: import("ava").ExecutionContext) {
  const { nats, sim, nc, spool, procs } = await agentProcessBench(t, "clock-spool-");
  const cfg = async () => (await (await fetch(new URL("/admin/config", sim.url))).json()) as { smClockMhz: number; powerLimitW: number };
  const startAgent = async () => {
    const p = spawn(process.execPath, [bin, "agent", "--nats", nats.url, "--node-id", "s1", "--source", "sim", "--dcgm-url", sim.metricsUrl, "--allow-clock-control", "--upstream", sim.url, "--listen", "127.0.0.1:0", "--spool-dir", spool], { stdio: ["ignore", "pipe", "pipe"] });
    procs.push(p);
    let err = "";
    p.stderr!.on("data", (d) => (err += d));
    await untilSaid(p, () => err, /publishing to/, 30_000);
    return { p, log: () => err };
  };
  const ask = async (verb: string, body: unknown) => {
    const m = await nc.request(`ctl.v1.s1.${verb}`, JSON.stringify(body), { timeout: 5000 });
    return { error: m.headers?.get("Nats-Service-Error"), body: new TextDecoder().decode(m.data) };
  };
  return { cfg, startAgent, ask };
}

for (const sig of ["SIGTERM", "SIGINT"] as const) {
  test.serial(`clock control (agent process) - ${sig} while a change is held restores clock and power limit`, async (t) => {
    const { cfg, startAgent, ask } = await setup(t);
    const a = await startAgent();
    t.falsy((await ask("set", { gpus: [0, 1], smClockMhz: 1200, powerLimitW: 500, by: "t" })).error);
    t.log("held:", JSON.stringify(await cfg()));
    const exited = new Promise((r) => a.p.once("exit", (code, s) => r(`${code} ${s}`)));
    a.p.kill(sig);
    t.log("exit", await exited);
    const c = await cfg();
    t.log("after:", JSON.stringify(c), a.log().split("\n").filter((l) => /clock|SIG/.test(l)).join(" | "));
    t.is(c.smClockMhz, 1980);
    t.is(c.powerLimitW, 700);
  });
}

test.serial("clock control (agent process) - after SIGKILL, the next start undoes what the killed run left in force, audited", async (t) => {
  const { cfg, startAgent, ask } = await setup(t);
  const a = await startAgent();
  t.falsy((await ask("set", { gpus: [0, 1], smClockMhz: 1200, powerLimitW: 500, leaseMs: 1000, by: "t" })).error);
  a.p.kill("SIGKILL");
  await new Promise((r) => a.p.once("exit", r));
  const next = await startAgent();
  await until(async () => ((c) => c.smClockMhz === 1980 && c.powerLimitW === 700)(await cfg()), 2000, "the killed run's clock and power limit undone");
  const c = await cfg();
  t.regex(next.log(), /clock control: restore .*previous run that did not stop/, "the restore is audited (and logged)");
  t.log("after SIGKILL + restart:", JSON.stringify(c));
  t.is(c.smClockMhz, 1980);
  t.is(c.powerLimitW, 700);
});

test.serial("clock control (agent process) - a set whose power limit the node refuses leaves no clock locked", async (t) => {
  const { cfg, startAgent, ask } = await setup(t);
  const a = await startAgent();
  const r = await ask("set", { gpus: [0], smClockMhz: 1200, powerLimitW: 50, leaseMs: 1000, by: "t" });
  t.log("reply", r.error);
  await until(async () => (await cfg()).smClockMhz === 1980, 1500, "the clock undone within the 1 s lease");
  t.log("after the refused set:", JSON.stringify(await cfg()), "get:", (await ask("get", {})).body.slice(-120));
  a.p.kill("SIGTERM");
  await new Promise((r) => a.p.once("exit", r));
  const c = await cfg();
  t.log("after SIGTERM:", JSON.stringify(c));
  t.is(c.smClockMhz, 1980);
});
