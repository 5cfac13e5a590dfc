import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { decode } from "../../shared/mod.ts";
import { freePort } from "../../infra/ports.ts";
import { errorMessage } from "../../shared/errors.ts";
import { createLifecycle, type Lifecycle } from "../../shared/lifecycle.ts";

/**
 * A real nats-server (JetStream) on a free loopback port, for tests that need only the broker.
 * `restart()` stops it and starts it again on the same port and store (for outage tests).
 */
export interface TestNats {
  url: string;
  port: number;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Extra config text (accounts, authorization) is written into the server's config file. */
  configPath: string;
}

export function natsBinary(): string {
  return process.env.NATS_SERVER_BIN ?? "/usr/sbin/nats-server";
}

export async function startTestNats(opts: { config?: string } = {}): Promise<TestNats> {
  const dir = mkdtempSync(join(tmpdir(), "test-nats-"));
  const port = await freePort();
  const configPath = join(dir, "nats.conf");
  writeFileSync(configPath, `listen: 127.0.0.1:${port}\njetstream { store_dir: "${join(dir, "js")}" }\n${opts.config ?? ""}\n`);
  let proc: ChildProcess | undefined;
  // One lifecycle per run of the server (restart() stops it and starts it again).
  let life: Lifecycle | undefined;
  const url = `nats://127.0.0.1:${port}`;
  const start = async () => {
    const p = spawn(natsBinary(), ["-c", configPath], { stdio: ["ignore", "ignore", "pipe"] });
    proc = p;
    const exited = new Promise<void>((resolve) => p.once("exit", () => resolve()));
    life = createLifecycle({
      graceMs: 3000,
      graceful: async () => {
        if (p.exitCode === null && p.signalCode === null) p.kill("SIGTERM");
        await exited;
      },
      force: async () => {
        p.kill("SIGKILL");
        await exited;
      },
    });
    let stderr = "";
    p.stderr!.on("data", (d) => (stderr += d));
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        const nc = await connect({ servers: url, reconnect: false, timeout: 500, ...(opts.config?.includes("authorization") || opts.config?.includes("accounts") ? { user: "probe", pass: "probe" } : {}) });
        await nc.close();
        return;
      } catch (err) {
        // With auth configured, an authorization error still proves the server is up.
        if (/authorization|Authorization/.test(errorMessage(err))) return;
        if (p.exitCode !== null) throw new Error(`nats-server exited: ${stderr.slice(-500)}`);
        if (Date.now() > deadline) throw new Error(`nats-server did not start: ${stderr.slice(-500)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  };
  const stop = async () => {
    await life?.stop();
  };
  await start();
  process.once("exit", () => {
    proc?.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });
  return { url, port, configPath, start, stop };
}

/** Every message a stream holds now, in order, decoded, with its Nats-Msg-Id and size. */
export async function readStream<T = unknown>(url: string, stream: string): Promise<{ msgId: string | undefined; bytes: number; value: T }[]> {
  const nc = await connect({ servers: url });
  try {
    const info = await (await jetstreamManager(nc)).streams.info(stream);
    const c = await jetstream(nc).consumers.get(stream, { deliver_policy: DeliverPolicy.All });
    const out: { msgId: string | undefined; bytes: number; value: T }[] = [];
    while (out.length < info.state.messages) {
      const m = await c.next({ expires: 2000 });
      if (!m) break;
      out.push({ msgId: m.headers?.get("Nats-Msg-Id"), bytes: m.data.length, value: decode(m.data) as T });
    }
    return out;
  } finally {
    await nc.close();
  }
}
