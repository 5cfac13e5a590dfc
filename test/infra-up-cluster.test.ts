import test from "ava";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { upCommand } from "../infra/up-command.ts";
import { ALL_STREAMS, ConfigError, openBucket, parseCommand } from "../shared/mod.ts";

const REPO = new URL("..", import.meta.url).pathname;

/** Live processes whose command line mentions `text` (the run directory), by program name. */
async function processesMentioning(text: string): Promise<string[]> {
  const found: string[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const argv = (await readFile(`/proc/${entry}/cmdline`, "utf8").catch(() => "")).split("\0");
    if (argv.some((a) => a.includes(text))) found.push(argv[0]!.split("/").pop()!);
  }
  return found.sort();
}

test("up --cluster - starts 3 NATS nodes and InfluxDB on loopback, prints their URLs, every stream R3; SIGINT stops all four", async (t) => {
  t.timeout(90_000);
  const runDir = await mkdtemp(join(tmpdir(), "joulestream-up-cluster-"));
  t.teardown(() => rm(runDir, { recursive: true, force: true }));
  const child = spawn(process.execPath, [join(REPO, "bin/joulestream.mjs"), "up", "--cluster", "--run-dir", runDir, "--no-install"], { stdio: ["ignore", "pipe", "pipe"] });
  t.teardown(() => void child.kill("SIGKILL"));
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  const lines: string[] = [];
  const ready = (async () => {
    for await (const line of createInterface({ input: child.stdout! })) {
      lines.push(line);
      if (line.startsWith("export JOULESTREAM_INFLUX_DB=")) return true;
    }
    return false;
  })();
  if (!(await Promise.race([ready, exited.then(() => false)]))) throw new Error(`up --cluster did not get ready:\n${stderr}`);
  const env = (k: string) => lines.find((l) => l.startsWith(`export ${k}=`))!.slice(`export ${k}=`.length);
  const servers = env("JOULESTREAM_NATS_URL").split(",");
  t.is(servers.length, 3);
  t.true(servers.every((u) => u.startsWith("nats://127.0.0.1:")), servers.join(","));
  t.is(lines.filter((l) => /^NATS n[123] /.test(l)).length, 3);
  t.true(lines.some((l) => l.startsWith(`Streams   ${ALL_STREAMS.join(", ")}: R3`)), lines.join("\n"));

  const nc = await connect({ servers });
  const jsm = await jetstreamManager(nc);
  for (const name of ALL_STREAMS) t.is((await jsm.streams.info(name)).config.num_replicas, 3, name);
  // A service pointed at it creates its buckets R3 too, without being told.
  t.is((await (await openBucket(nc, "up-cluster", { history: 1 })).status()).replicas, 3);
  await nc.close();
  const ping = await fetch(`${env("JOULESTREAM_INFLUX_URL")}/ping`);
  t.is(ping.status, 204);

  const running = (await processesMentioning(runDir)).filter((p) => p === "nats-server" || p === "influxd");
  t.deepEqual(running, ["influxd", "nats-server", "nats-server", "nats-server"]);
  child.kill("SIGINT");
  const [code] = await exited;
  t.is(code, 130);
  t.deepEqual(await processesMentioning(runDir), [], "up waited for all four servers before exiting");
});

test("up --cluster - a NATS port is refused: the cluster picks its own three", (t) => {
  const err = t.throws(() => parseCommand(upCommand.spec, ["--cluster", "--nats-port", "4222"], {}), { instanceOf: ConfigError });
  t.is(err?.key, "--nats-port");
  t.notThrows(() => parseCommand(upCommand.spec, ["--nats-port", "4222"], {}));
});
