import test from "ava";
import { spawn } from "node:child_process";
import { isPortFree } from "../infra/ports.ts";
import { fileURLToPath } from "node:url";
import { until, untilSaid } from "./helpers/until.ts";

const bin = fileURLToPath(new URL("../bin/joulestream.mjs", import.meta.url));

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

test("demo - Ctrl-C mid-run stops everything it started: no process left, no port bound", async (t) => {
  t.timeout(90_000);
  const child = spawn(process.execPath, [bin, "demo", "--synthetic", "--duration", "60", "--rate", "2"], { stdio: ["ignore", "pipe", "pipe"] });
  let log = "";
  const pids: number[] = [];
  const ports: number[] = [];
  child.stderr.on("data", (d: Buffer) => {
    log += d.toString();
    for (const m of d.toString().matchAll(/pid (\d+) at \w+:\/\/127\.0\.0\.1:(\d+)/g)) {
      pids.push(Number(m[1]));
      ports.push(Number(m[2]));
    }
    for (const m of d.toString().matchAll(/127\.0\.0\.1:(\d+)/g)) ports.push(Number(m[1]));
  });
  await untilSaid(child, () => log, /synthetic .* load at/, 60_000);
  t.true(pids.length >= 2, log);
  // Interrupted with requests in flight: the simulated node says when it runs some.
  const simUrl = /simulated node: .*(http:\/\/127\.0\.0\.1:\d+)/.exec(log)?.[1];
  t.truthy(simUrl, log);
  const running = async () => {
    const res = await fetch(`${simUrl}/admin/config`);
    const cfg = (await res.json()) as { instances: { running: number }[] };
    return cfg.instances.some((i) => i.running > 0);
  };
  await until(running, 30_000, "a request in flight on the demo's simulated node");
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  child.kill("SIGINT");
  const code = await exited;
  t.is(code, 130, log);
  for (const pid of pids) t.false(alive(pid), `process ${pid} still running\n${log}`);
  for (const port of new Set(ports)) t.true(await isPortFree(port), `port ${port} still bound`);
});
