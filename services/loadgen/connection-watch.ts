import type { NatsConnection, Status } from "@nats-io/nats-core";

/**
 * Whether this process's NATS connection is up. A peer's heartbeats cannot arrive while it is down,
 * so silence then says nothing about the peer: the coordinator and the workers judge each other's
 * silence only while connected, counting from the reconnect (a 12 s outage had each declare the
 * other lost, and the run was stopped with most of its results missing).
 */
export interface ConnectionWatch {
  readonly offline: boolean;
  stop(): void;
}

export function watchConnection(nc: NatsConnection, onReconnect: () => void): ConnectionWatch {
  // nats.js's status iterator has stop(), which the AsyncIterable type leaves out.
  const status = nc.status() as AsyncIterable<Status> & { stop?: () => void };
  let offline = false;
  void (async () => {
    for await (const s of status) {
      if (s.type === "disconnect") offline = true;
      else if (s.type === "reconnect") {
        offline = false;
        onReconnect();
      }
    }
  })();
  return {
    get offline() {
      return offline;
    },
    stop: () => status.stop?.(),
  };
}
