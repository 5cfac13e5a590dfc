import type { ExecutionContext } from "ava";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { startEchoServer, type EchoServer } from "./echo-server.ts";
import { startTestNats, type TestNats } from "./nats-server.ts";

/**
 * What a distributed load test needs: a real nats-server, an echo server answering every request
 * at once, and `connections` NATS connections (one for the coordinator, one per worker), all torn
 * down after the test.
 */
export async function loadCluster(t: ExecutionContext, connections: number): Promise<{ nats: TestNats; server: EchoServer; conns: NatsConnection[] }> {
  const nats = await startTestNats();
  t.teardown(() => nats.stop());
  const server = await startEchoServer({ tokensPerChunk: 1 << 20 });
  t.teardown(() => server.stop());
  const conns = await Promise.all(Array.from({ length: connections }, () => connect({ servers: nats.url })));
  t.teardown(() => Promise.all(conns.map((c) => (c.isClosed() ? undefined : c.close()))).then(() => {}));
  return { nats, server, conns };
}
