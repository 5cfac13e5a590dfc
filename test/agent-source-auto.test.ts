import test from "ava";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, connect as connectTcp, type AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { connect } from "@nats-io/transport-node";
import { decode, subjects, type PowerBatch } from "../shared/mod.ts";
import { startSimnode } from "../services/simnode/server.ts";
import { fakeNvmlCopy } from "./helpers/fake-nvml.ts";
import { startTestNats } from "./helpers/nats-server.ts";

/**
 * The agent as a node operator starts it: no --source (auto: NVML, else a DCGM exporter, else one
 * error naming both) and, on a node with no OpenAI server, no --upstream (power only).
 */
const bin = fileURLToPath(new URL("../bin/joulestream.mjs", import.meta.url));
const NO_NVML = "/nonexistent/libnvidia-ml.so.1";

/** A loopback port nothing listens on (bound, then closed). */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const port = (s.address() as AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

const refused = (port: number) =>
  new Promise<boolean>((resolve) => {
    const sock = connectTcp(port, "127.0.0.1");
    sock.once("connect", () => (sock.destroy(), resolve(false)));
    sock.once("error", () => resolve(true));
  });

function agent(t: import("ava").ExecutionContext, args: string[], env: Record<string, string>) {
  const spool = mkdtempSync(join(tmpdir(), "auto-spool-"));
  const p: ChildProcess = spawn(process.execPath, [bin, "agent", "--spool-dir", spool, "--rapl", "off", ...args], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, ...env } });
  let err = "";
  p.stderr!.on("data", (d) => (err += d));
  const exited = new Promise<number | null>((r) => p.once("exit", (code) => r(code)));
  t.teardown(async () => {
    if (p.exitCode === null) p.kill("SIGKILL");
    await exited;
    rmSync(spool, { recursive: true, force: true });
  });
  /** Resolves with the log once the agent says it publishes; rejects if it exits first. */
  const started = () =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        if (/publishing to/.test(err)) resolve(err);
      };
      p.stderr!.on("data", check);
      check();
      void exited.then((code) => reject(new Error(`agent exited ${code}: ${err}`)));
    });
  return { started, exited, log: () => err };
}

async function firstPower(t: import("ava").ExecutionContext, natsUrl: string, node: string) {
  const nc = await connect({ servers: natsUrl });
  t.teardown(() => nc.close());
  const sub = nc.subscribe(subjects.power(node), { max: 1 });
  return {
    next: (async () => {
      for await (const m of sub) return decode(m.data) as PowerBatch;
      throw new Error("no POWER window");
    })(),
  };
}

test("agent --source auto - NVML when the library loads, with no --upstream: POWER is published and no tap listens", async (t) => {
  const nats = await startTestNats();
  t.teardown(() => nats.stop());
  const port = await freePort();
  const power = await firstPower(t, nats.url, "auto-nvml");
  const a = agent(t, ["--nats", nats.url, "--node-id", "auto-nvml", "--listen", `127.0.0.1:${port}`, "--publish-interval-ms", "200"], { JOULESTREAM_NVML_LIBRARY: await fakeNvmlCopy(), FAKE_NVML_GPUS: "2" });
  const log = await a.started();
  t.regex(log, /--source auto: NVML loaded/);
  t.regex(log, /2 GPUs via nvml \(power only\), publishing to/);
  t.regex(log, /no --upstream or --instance: power only, no request tap/);
  t.notRegex(log, /tap at/);
  const batch = await power.next;
  t.is(batch.source, "nvml");
  t.deepEqual(batch.gpus.map((g) => g.gpu), [0, 1]);
  t.deepEqual(batch.instances, [], "a window waits for no instance's WORK");
  t.true(await refused(port), "nothing listens where a tap would");
});

test("agent --source auto - without NVML, the DCGM-style exporter that answers", async (t) => {
  const nats = await startTestNats();
  t.teardown(() => nats.stop());
  const sim = await startSimnode({ gpus: 2, tp: 2, model: "llama-3-8b" });
  t.teardown(() => sim.stop());
  const power = await firstPower(t, nats.url, "auto-dcgm");
  const a = agent(t, ["--nats", nats.url, "--node-id", "auto-dcgm", "--dcgm-url", sim.metricsUrl, "--publish-interval-ms", "200"], { JOULESTREAM_NVML_LIBRARY: NO_NVML });
  const log = await a.started();
  t.regex(log, new RegExp(`--source auto: no NVML \\(.*${NO_NVML.replace(/[./]/g, "\\$&")}.*\\); reading the DCGM exporter at ${sim.metricsUrl.replace(/[./]/g, "\\$&")}`));
  t.regex(log, /2 GPUs via dcgm/);
  t.is((await power.next).source, "dcgm");
});

test("agent --source auto - with neither, one error that names both, before NATS is dialled", async (t) => {
  const port = await freePort();
  const a = agent(t, ["--nats", "nats://127.0.0.1:1", "--node-id", "auto-none", "--dcgm-url", `http://127.0.0.1:${port}/metrics`], { JOULESTREAM_NVML_LIBRARY: NO_NVML });
  t.is(await a.exited, 2);
  const lines = a.log().trim().split("\n");
  t.is(lines.length, 1, a.log());
  t.regex(lines[0]!, /^joulestream: --source: auto found no GPU power source: NVML did not load \(.*\/nonexistent\/libnvidia-ml\.so\.1.*\), and no DCGM exporter answered at http:\/\/127\.0\.0\.1:\d+\/metrics \(.*\)\. Give --nvml-library PATH/);
});

test("agent - --gpus or --model without --upstream is refused (they describe an instance there is none of)", async (t) => {
  const a = agent(t, ["--nats", "nats://127.0.0.1:1", "--node-id", "x", "--source", "sim", "--gpus", "0-3"], {});
  t.is(await a.exited, 2);
  t.regex(a.log(), /^joulestream: --gpus: describes the instance --upstream names, and there is no --upstream/);
});
