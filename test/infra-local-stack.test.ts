import test, { type ExecutionContext } from "ava";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { jetstream, jetstreamManager, type StreamInfo } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { ALL_STREAMS, ensureStreams } from "../shared/streams.ts";
import { PermanentError, RetryableError } from "../shared/errors.ts";
import { startLocalStack, STACK_FILE, type LocalStack } from "../infra/local-stack.ts";
import { isLoopbackAddress, isPortFree, isProcessAlive, listeningSocketsOf } from "../infra/ports.ts";
import { ServerStartError } from "../infra/readiness.ts";
import { withStack } from "./helpers/stack.ts";
import { until } from "./helpers/until.ts";

const REPO = new URL("..", import.meta.url).pathname;

async function streamInfos(url: string): Promise<StreamInfo[]> {
  const nc = await connect({ servers: url });
  try {
    const jsm = await jetstreamManager(nc);
    const out: StreamInfo[] = [];
    for await (const si of jsm.streams.list()) out.push(si);
    return out.sort((a, b) => a.config.name.localeCompare(b.config.name));
  } finally {
    await nc.close();
  }
}

async function showDatabases(stack: LocalStack): Promise<string[]> {
  const res = await fetch(`${stack.influxUrl}/query?q=${encodeURIComponent("SHOW DATABASES")}`);
  const body = (await res.json()) as { results: { series?: { values: string[][] }[] }[] };
  return (body.results[0]?.series?.[0]?.values ?? []).map((v) => v[0]!);
}

/** Processes whose command line mentions `text` (a run directory): what a stack could leave behind. */
async function processesMentioning(text: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const cmdline = (await readFile(`/proc/${entry}/cmdline`, "utf8")).replaceAll("\0", " ");
      if (cmdline.includes(text) && (await isProcessAlive(Number(entry)))) pids.push(Number(entry));
    } catch {
      // exited while we listed
    }
  }
  return pids;
}

test("local stack - creates every stream and the database; a second ensureStreams changes nothing", async (t) => {
  const stack = await withStack(t);
  const before = await streamInfos(stack.natsUrl);
  t.deepEqual(before.map((s) => s.config.name), [...ALL_STREAMS].sort());
  for (const si of before) t.is(si.config.num_replicas, 1, si.config.name);
  t.true((await showDatabases(stack)).includes(stack.database));

  const nc = await connect({ servers: stack.natsUrl });
  t.teardown(() => nc.close());
  await ensureStreams(await jetstreamManager(nc));
  const after = await streamInfos(stack.natsUrl);
  t.deepEqual(
    after.map((s) => [s.config, s.created]),
    before.map((s) => [s.config, s.created]),
  );
});

test("local stack - binds only loopback, on the ports it reports", async (t) => {
  const stack = await withStack(t);
  const natsSockets = await listeningSocketsOf(stack.pids.nats);
  const influxSockets = await listeningSocketsOf(stack.pids.influxd);
  for (const s of [...natsSockets, ...influxSockets]) t.true(isLoopbackAddress(s.address), `listens on ${s.address}:${s.port}`);
  t.deepEqual(natsSockets.map((s) => s.port).sort(), [stack.ports.nats, stack.ports.natsMonitor].sort());
  // influxd's HTTP API and its backup/restore RPC service (8088 by default, on all interfaces).
  t.deepEqual(influxSockets.map((s) => s.port).sort(), [stack.ports.influxHttp, stack.ports.influxRpc].sort());
});

test("local stack - stop leaves no process, frees every port, removes its temp dir, and is idempotent", async (t) => {
  const stack = await startLocalStack();
  const ports = Object.values(stack.ports);
  t.true(await isProcessAlive(stack.pids.nats));
  t.true(await isProcessAlive(stack.pids.influxd));
  await Promise.all([stack.stop(), stack.stop()]);
  await stack.stop();
  t.false(await isProcessAlive(stack.pids.nats));
  t.false(await isProcessAlive(stack.pids.influxd));
  t.deepEqual(await processesMentioning(stack.runDir), []);
  for (const p of ports) t.true(await isPortFree(p), `port ${p} still bound`);
  t.false(existsSync(stack.runDir));
  t.is(await stack.closed(), undefined);
});

test("local stack - a run directory keeps its data across restarts and serves one stack at a time", async (t) => {
  const runDir = await mkdtemp(join(tmpdir(), "joulestream-test-"));
  t.teardown(() => rm(runDir, { recursive: true, force: true }));
  const first = await startLocalStack({ runDir });
  try {
    const err = await t.throwsAsync(startLocalStack({ runDir }));
    t.true(err instanceof PermanentError, String(err));
    t.regex(err!.message, /in use/);
    const nc = await connect({ servers: first.natsUrl });
    await jetstream(nc).publish("power.v1.node-1", new Uint8Array([1]));
    await nc.close();
  } finally {
    await first.stop();
  }
  t.true(existsSync(join(runDir, "nats-server.log")));
  t.false(existsSync(join(runDir, STACK_FILE)));

  const second = await withStack(t, { runDir });
  const power = (await streamInfos(second.natsUrl)).find((s) => s.config.name === "POWER");
  t.is(power?.state.messages, 1);
});

test("local stack - a taken port fails the start with the server's log, and leaves nothing running", async (t) => {
  // Someone else's server on the port: it accepts connections and never answers them.
  const blocker = createServer((socket) => socket.destroy());
  blocker.listen(0, "127.0.0.1");
  await once(blocker, "listening");
  t.teardown(() => new Promise<void>((r) => blocker.close(() => r())));
  const busyPort = (blocker.address() as { port: number }).port;
  const runDir = await mkdtemp(join(tmpdir(), "joulestream-test-"));
  t.teardown(() => rm(runDir, { recursive: true, force: true }));

  const err = await t.throwsAsync(startLocalStack({ runDir, influxPort: busyPort }));
  t.true(err instanceof ServerStartError, String(err));
  t.is((err as ServerStartError).server, "influxd");
  t.true((err as ServerStartError).addressInUse);
  // The error carries the server's own words, not only ours.
  t.regex(err!.message, /last lines of its log[\s\S]*address already in use/);
  t.deepEqual(await processesMentioning(runDir), []);
});

interface UpProcess {
  child: ChildProcess;
  exited: Promise<[number | null, NodeJS.Signals | null]>;
  info: { owner: number; pids: { nats: number; influxd: number }; ports: Record<string, number> };
}

/** `joulestream up --run-dir DIR` in a child process, resolved once it printed its env lines. */
async function startUp(t: ExecutionContext, runDir: string): Promise<UpProcess> {
  const child = spawn(process.execPath, [join(REPO, "bin/joulestream.mjs"), "up", "--run-dir", runDir], { stdio: ["ignore", "pipe", "pipe"] });
  t.teardown(() => void child.kill("SIGKILL"));
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  const ready = (async () => {
    for await (const line of createInterface({ input: child.stdout! })) if (line.startsWith("export JOULESTREAM_INFLUX_URL=")) return true;
    return false;
  })();
  if (!(await Promise.race([ready, exited.then(() => false)]))) throw new Error(`up did not get ready:\n${stderr}`);
  const info = JSON.parse(await readFile(join(runDir, STACK_FILE), "utf8")) as UpProcess["info"];
  return { child, exited, info };
}

test("local stack - servers die within seconds when the process that started them is SIGKILLed", async (t) => {
  const runDir = await mkdtemp(join(tmpdir(), "joulestream-test-"));
  t.teardown(() => rm(runDir, { recursive: true, force: true }));
  const { child, exited, info } = await startUp(t, runDir);
  t.is(info.owner, child.pid ?? -1);
  t.true(await isProcessAlive(info.pids.nats));
  t.true(await isProcessAlive(info.pids.influxd));

  child.kill("SIGKILL");
  await exited;
  await until(async () => !(await isProcessAlive(info.pids.nats)) && !(await isProcessAlive(info.pids.influxd)), 5_000, "servers gone");
  await until(async () => (await processesMentioning(runDir)).length === 0, 2_000, "nothing left mentioning the run dir");
  for (const p of Object.values(info.ports)) t.true(await isPortFree(p), `port ${p} still bound`);
});

test("local stack - joulestream up stops both servers on SIGINT before it exits", async (t) => {
  const runDir = await mkdtemp(join(tmpdir(), "joulestream-test-"));
  t.teardown(() => rm(runDir, { recursive: true, force: true }));
  const { child, exited, info } = await startUp(t, runDir);
  child.kill("SIGINT");
  const [code] = await exited;
  t.is(code, 130);
  // No grace period needed: `up` waited for the servers before exiting.
  t.false(await isProcessAlive(info.pids.nats));
  t.false(await isProcessAlive(info.pids.influxd));
  t.false(existsSync(join(runDir, STACK_FILE)));
});

test("local stack - a server that dies on its own stops the other and closed() says why", async (t) => {
  const stack = await withStack(t);
  process.kill(stack.pids.nats, "SIGKILL");
  const err = await stack.closed();
  t.true(err instanceof RetryableError, String(err));
  t.regex(err!.message, /nats-server exited unexpectedly \(SIGKILL\)/);
  t.false(await isProcessAlive(stack.pids.influxd));
  t.false(existsSync(stack.runDir));
});
