import test from "ava";
import { connect } from "@nats-io/transport-node";
import { startTestNats } from "./helpers/nats-server.ts";
import { openLoadJoin } from "../services/analyzer/load-join.ts";
import type { LoadResult } from "../shared/messages/load.ts";

const load = (id: string, o: Partial<LoadResult> = {}): LoadResult => ({ v: 1, kind: "load", msgId: id, runId: "r", worker: "w", requestId: id, index: 0, target: "http://x", scheduledMs: 1, sentMs: 2, ttftMs: 50, requestedPromptTokens: 1, requestedOutputTokens: 1, promptTokens: 1, outputTokens: 1, status: "ok", ...o });
const energy = (id: string) => ({ v: 1, kind: "energy", msgId: id, node: "n", instance: "i", requestId: id, startMs: 1, endMs: 2, status: "ok", promptTokens: 1, outputTokens: 1, energyMj: 1, prefillEnergyMj: 0, decodeEnergyMj: 1, idleShareMj: 0, windows: 1, incomplete: false, config: {} }) as any;

test("load join - LOAD before or after ENERGY, duplicates and two replicas racing: every pair joined once, the same point", async (t) => {
  const nats = await startTestNats();
  t.teardown(() => nats.stop());
  const nc = await connect({ servers: nats.url });
  t.teardown(() => nc.close());
  const j = await openLoadJoin(nc, "g", { ttftMs: 100 });
  const j2 = await openLoadJoin(nc, "g", { ttftMs: 100 });
  t.is(await j.addLoad(load("a")), undefined);
  t.truthy(await j.addEnergy(energy("a")));
  t.is(await j.addEnergy(energy("b")), undefined);
  const jb = await j.addLoad(load("b", { ttftMs: 500 }));
  t.is(jb?.sloMet, false);
  t.truthy(await j.addLoad(load("b")), "dup LOAD re-joins");
  // race on two replicas
  let joined = 0;
  for (let i = 0; i < 50; i++) {
    const r = await Promise.all([j.addLoad(load(`c${i}`)), j2.addEnergy(energy(`c${i}`))]);
    if (r.some((x) => x)) joined++;
  }
  t.is(joined, 50);
});
