import test from "ava";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { decode, type PowerBatch } from "../shared/mod.ts";
import { readStream } from "./helpers/nats-server.ts";
import { agentProcessBench } from "./helpers/agent-process.ts";
import { pause } from "./helpers/until.ts";

const bin = fileURLToPath(new URL("../bin/joulestream.mjs", import.meta.url));

/**
 * Issue 19, item 9, end to end: an agent process killed (SIGKILL) and one stopped (SIGTERM), each
 * restarted at once, in the middle of a window. The POWER windows of the three runs must chain on
 * the energy counter (each starting at the reading that ended the one before), so the energy they
 * publish is the counter's delta over the whole span; before, each restart lost the span from the
 * last window published to the new run's first sample (up to a second).
 */
test("window carry (agent process) - across a kill -9 and a graceful restart mid-window, published energy is the counter's delta over the whole span", async (t) => {
  t.timeout(120_000);
  const { nats, sim, nc, spool, procs } = await agentProcessBench(t, "carry-spool-");
  // Windows as they are published, to wait on (the stream, read at the end, is what is checked).
  const seen: PowerBatch[] = [];
  const waiters: (() => void)[] = [];
  const sub = nc.subscribe("power.v1.s1");
  void (async () => {
    for await (const m of sub) {
      seen.push(decode(m.data) as PowerBatch);
      waiters.splice(0).forEach((w) => w());
    }
  })();
  const windowsPublished = async (n: number) => {
    const target = seen.length + n;
    while (seen.length < target) await new Promise<void>((r) => waiters.push(r));
  };
  const midWindow = async () => {
    const ms = Date.now() % 1000;
    // To the next x.500 s: the kill and the restart must fall in the middle of a (1 s) window.
    await pause((1500 - ms) % 1000);
  };
  const startAgent = async () => {
    const p = spawn(process.execPath, [bin, "agent", "--nats", nats.url, "--node-id", "s1", "--source", "sim", "--dcgm-url", sim.metricsUrl, "--spool-dir", spool], { stdio: ["ignore", "pipe", "pipe"] });
    procs.push(p);
    let err = "";
    p.stderr!.on("data", (d) => (err += d));
    const exited = new Promise<void>((r) => p.once("exit", () => r()));
    await new Promise<void>((resolve, reject) => {
      const check = () => {
        if (/publishing to/.test(err)) resolve();
        else if (p.exitCode !== null) reject(new Error(`agent did not start: ${err}`));
      };
      p.stderr!.on("data", check);
      p.once("exit", check);
    });
    return { p, exited, log: () => err };
  };

  const a = await startAgent();
  await windowsPublished(2);
  await midWindow();
  a.p.kill("SIGKILL");
  await a.exited;
  const b = await startAgent();
  await windowsPublished(2);
  await midWindow();
  b.p.kill("SIGTERM");
  await b.exited;
  const c = await startAgent();
  await windowsPublished(2);
  c.p.kill("SIGTERM");
  await c.exited;
  t.log(b.log().split("\n").filter((l) => /power window/.test(l)).join(" | "));
  t.log(c.log().split("\n").filter((l) => /power window/.test(l)).join(" | "));
  t.regex(b.log(), /power window: continuing .* left open/);
  t.regex(c.log(), /power window: continuing .* stopped in/);

  const windows = (await readStream<PowerBatch>(nats.url, "POWER")).map((m) => m.value);
  t.is(new Set(windows.map((w) => w.windowStartMs)).size, windows.length, "one message per window");
  t.deepEqual(windows.map((w) => w.seq), windows.map((_, i) => i), "seq continues across the restarts");
  for (const gpu of [0, 1]) {
    const cols = windows.map((w) => w.gpus.find((g) => g.gpu === gpu)!);
    t.true(cols.every((g) => g?.energyMj !== undefined && g.energyStartMj !== undefined), `gpu ${gpu}: every window carries the counter`);
    const breaks = cols.slice(1).flatMap((g, i) => (g.energyStartMj === cols[i]!.energyMj!.at(-1) && g.startTMs === cols[i]!.tMs.at(-1) ? [] : [windows[i + 1]!.windowStartMs]));
    t.deepEqual(breaks, [], `gpu ${gpu}: every window starts at the reading that ended the one before`);
    const publishedMj = cols.reduce((e, g) => e + g.energyMj!.at(-1)! - g.energyStartMj!, 0);
    const counterMj = cols.at(-1)!.energyMj!.at(-1)! - cols[0]!.energyStartMj!;
    t.true(Math.abs(publishedMj / counterMj - 1) < 0.001, `gpu ${gpu}: published ${publishedMj} mJ, the counter moved ${counterMj} mJ`);
  }
});
