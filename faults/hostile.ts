import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/nats-core";
import { createRng } from "../shared/rng.ts";
import { encode, subjects } from "../shared/mod.ts";

/**
 * Hostile messages on the subjects the analyzer reads, for the node and run under test: random
 * bytes, msgpack of the wrong shape, and well-formed messages of an unknown version. None of them
 * is valid, so each must be dead-lettered and none may change a stored result. (A valid message
 * with false figures is spoofing, which per-node NATS permissions stop: infra/nats/auth.ts.)
 */
export interface Hostile {
  subject: string;
  data: Uint8Array;
}

export function hostileMessages(n: number, node: string, runId: string, seed = 99): Hostile[] {
  const rng = createRng(seed);
  const targets = [subjects.power(node), subjects.work(node), subjects.requests(node), subjects.load(runId)];
  const out: Hostile[] = [];
  for (let i = 0; i < n; i++) {
    const subject = targets[i % targets.length]!;
    const kind = Math.floor(i / targets.length) % 3;
    let data: Uint8Array;
    if (kind === 0) {
      data = Uint8Array.from({ length: 1 + rng.int(0, 200) }, () => rng.int(0, 255));
    } else if (kind === 1) {
      const shapes: unknown[] = [
        { v: 1, kind: "power", node, msgId: "" },
        { v: 1, kind: "work", node: "not a token!", msgId: `h${i}` },
        { v: 1, kind: "other", msgId: `h${i}` },
        { v: 1, requestId: 42, runId, status: "ok" },
        [1, 2, 3],
        "just a string",
        { v: 1, kind: "power", node, msgId: `h${i}`, gpus: [{ gpu: -1, tMs: "soon", powerMw: [Number.NaN] }] },
      ];
      data = encode(shapes[i % shapes.length]);
    } else {
      data = encode({ v: 2, kind: ["power", "work", "request_batch", "load_result"][i % 4], node, runId, msgId: `h${i}` });
    }
    out.push({ subject, data });
  }
  return out;
}

/** Publishes them (each with its own Nats-Msg-Id) in slices spread evenly over `overMs`. */
export async function injectHostile(nc: NatsConnection, msgs: readonly Hostile[], overMs: number, tag: string): Promise<void> {
  const js = jetstream(nc, { timeout: 10_000 });
  const slices = Math.max(1, Math.floor(overMs / 100));
  const per = Math.ceil(msgs.length / slices);
  for (let i = 0; i < msgs.length; i += per) {
    const tick = new Promise((r) => setTimeout(r, 100));
    await Promise.all(msgs.slice(i, i + per).map((m, j) => js.publish(m.subject, m.data, { msgID: `hostile:${tag}:${i + j}` })));
    await tick;
  }
}
