import type { ExecutionContext } from "ava";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/nats-core";
import { connect } from "@nats-io/transport-node";
import { startSimnode, type Simnode } from "../../services/simnode/mod.ts";
import { startTestNats, type TestNats } from "./nats-server.ts";

/**
 * What the tests of agent processes (kill -9, restarts) stand on: a nats-server, a simulated node of
 * 2 GPUs, a connection and a spool dir, all gone when the test ends, with every agent process the
 * test records in `procs` killed if it still runs.
 */
export async function agentProcessBench(t: ExecutionContext, spoolPrefix: string): Promise<{ nats: TestNats; sim: Simnode; nc: NatsConnection; spool: string; procs: ChildProcess[] }> {
  const nats = await startTestNats();
  const sim = await startSimnode({ gpus: 2, tp: 2, model: "llama-3-8b" });
  const nc = await connect({ servers: nats.url });
  const spool = mkdtempSync(join(tmpdir(), spoolPrefix));
  const procs: ChildProcess[] = [];
  t.teardown(async () => {
    for (const p of procs) if (p.exitCode === null) p.kill("SIGKILL");
    await nc.close();
    await sim.stop();
    await nats.stop();
    rmSync(spool, { recursive: true, force: true });
  });
  return { nats, sim, nc, spool, procs };
}
