import type { JetStreamClient, JetStreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { decodeAs, errorMessage, loadResult } from "../../shared/mod.ts";
import { bindConsumer, type BoundConsumer } from "./consumers.ts";
import { publishDeadLetter } from "./intake.ts";
import type { LoadJoin } from "./load-join.ts";
import type { PointWriter } from "./point-writer.ts";
import { requestLoadPoint } from "./points.ts";
import type { Retry } from "./retry.ts";

/**
 * LOAD (the load generator's client-side results) is not partitioned by node and needs no join
 * state beyond the load-join bucket: each result is parked there and, if its request's energy is
 * already in, merged into the request's row; the message is acknowledged once that is done.
 * Results are handled concurrently (up to `maxInFlight`), each acknowledged on its own.
 */
export interface LoadIntake {
  stats(): { received: number; joined: number; deadLettered: number };
  pending(): Promise<number>;
  close(): Promise<void>;
}

export async function startLoadIntake(opts: { name: string; nc: NatsConnection; jsm: JetStreamManager; js: JetStreamClient; loadJoin: LoadJoin; writer: PointWriter; retry: Retry; maxInFlight?: number; log?: (line: string) => void; clock?: () => number }): Promise<LoadIntake> {
  const stats = { received: 0, joined: 0, deadLettered: 0 };
  const maxInFlight = opts.maxInFlight ?? 256;
  let inFlight = 0;
  let wake: (() => void) | undefined;
  const consumer: BoundConsumer = await bindConsumer({
    nc: opts.nc,
    jsm: opts.jsm,
    js: opts.js,
    spec: { stream: "LOAD", durable: `${opts.name}-load` },
    ...(opts.log ? { log: opts.log } : {}),
    handle(m, token) {
      stats.received++;
      inFlight++;
      const work = (async () => {
        const d = decodeAs(loadResult, m.data);
        if (!d.ok) {
          await publishDeadLetter(opts.js, opts.retry, "LOAD", m, d.reason, d.detail, (opts.clock ?? Date.now)());
          stats.deadLettered++;
        } else {
          const joined = await opts.retry("joining a load result", () => opts.loadJoin.addLoad(d.value));
          let point;
          try {
            point = joined && requestLoadPoint(joined);
          } catch (err) {
            opts.log?.(`load result ${d.value.requestId}: its point cannot be built, dropped: ${errorMessage(err)}`);
          }
          if (point) {
            await opts.writer.write([point]);
            stats.joined++;
          }
        }
        m.ack();
      })();
      work
        .catch(() => undefined) // stopped: unacknowledged, read again at the next start
        .finally(() => {
          inFlight--;
          token.done();
          consumer?.takeDone(); // acknowledged above, one by one: nothing waits for a checkpoint
          wake?.();
        });
      if (inFlight < maxInFlight) return;
      return new Promise<void>((r) => (wake = () => inFlight < maxInFlight && ((wake = undefined), r())));
    },
  });
  return {
    stats: () => ({ ...stats }),
    pending: () => consumer.pending(),
    close: () => consumer.close(),
  };
}
