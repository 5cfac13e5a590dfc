import test from "ava";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import type { NatsConnection } from "@nats-io/nats-core";
import { nodeIds, startFleet, type FleetReport } from "../services/fleet/emulator.ts";
import { createNodeModel } from "../services/fleet/node-model.ts";
import { readResults, startStackAnalyzer, type StoredRequest } from "./helpers/analyzer-harness.ts";
import { createRng } from "../shared/rng.ts";
import { deadLetter, decodeAs, encode, subjects } from "../shared/mod.ts";
import { withStack } from "./helpers/stack.ts";
import { pause } from "./helpers/until.ts";
import { compareWithTruth } from "./helpers/fleet-truth.ts";
import type { ExecutionContext } from "ava";

/**
 * Garbage on the analyzer's input subjects — random bytes, msgpack of the wrong shape, and copies of
 * real messages (same body msgId) that are invalid or of another version — injected while the
 * fleet emulator runs. Every piece must be dead-lettered, and what the analyzer stores from the
 * valid traffic must be exactly what it stores without the garbage.
 */
const GARBAGE = 10_000;
/**
 * In real time: a fast replay compresses event time so much that any skew between the analyzer's
 * consumers closes windows before their WORK arrives (see fleet-backlog.test.ts), and the garbage,
 * which slows one consumer, would then change results for that reason alone.
 */
const FLEET = { nodes: 4, durationS: 10, ratePerInstanceS: 2, seed: 21, realTime: true } as const;

type Kind = "random" | "schema" | "version";
interface Garbage {
  subject: string;
  data: Uint8Array;
  kind: Kind;
}

/** Deterministic garbage spread over POWER, WORK and REQUESTS subjects of the fleet's nodes. */
function makeGarbage(n: number): Garbage[] {
  const rng = createRng(99);
  const nodes = nodeIds("fleet", FLEET.nodes);
  // Real messages of the same nodes (same seed: the very messages the fleet publishes), to corrupt.
  const real = nodes.map((node) => createNodeModel({ node, seed: FLEET.seed, ratePerInstanceS: FLEET.ratePerInstanceS }).step(Date.UTC(2025, 0, 1)));
  const out: Garbage[] = [];
  for (let i = 0; i < n; i++) {
    const node = nodes[i % nodes.length]!;
    const which = Math.floor(i / nodes.length) % 3;
    const subject = [subjects.power, subjects.work, subjects.requests][which]!(node);
    const w = real[i % nodes.length]!;
    const original: Record<string, unknown> = which === 0 ? w.power : which === 1 ? w.work[0]! : (w.events[0] ?? w.work[0]!);
    const kind: Kind = (["random", "schema", "version"] as const)[i % 3]!;
    let data: Uint8Array;
    if (kind === "random") {
      data = Uint8Array.from({ length: 1 + rng.int(0, 200) }, () => rng.int(0, 255));
    } else if (kind === "version") {
      data = encode({ ...original, v: 2 });
    } else {
      // Right version and body msgId, wrong shape (each breaks a field every message kind has).
      const broken = [
        { ...original, msgId: "" },
        { ...original, node: "not a token!" },
        { ...original, kind: "other" },
        { v: 1, kind: original.kind },
        [1, 2, 3],
      ][i % 5];
      data = encode(broken);
    }
    out.push({ subject, data, kind });
  }
  return out;
}

/** Spreads the garbage over the run: a slice every 100 ms. */
async function injectGarbage(nc: NatsConnection, garbage: readonly Garbage[], overMs: number): Promise<void> {
  const js = jetstream(nc);
  const per = Math.ceil(garbage.length / (overMs / 100));
  for (let i = 0; i < garbage.length; i += per) {
    // Spread over the run, interleaved with the valid traffic, not all in front of it.
    const tick = pause(100);
    await Promise.all(garbage.slice(i, i + per).map((g, j) => js.publish(g.subject, g.data, { msgID: `garbage:${i + j}` })));
    await tick;
  }
}

async function runFleet(t: ExecutionContext, withGarbage: readonly Garbage[]) {
  const stack = await withStack(t);
  const h = await startStackAnalyzer(stack);
  t.teardown(() => h.close());
  const nc = await connect({ servers: stack.natsUrl });
  t.teardown(() => nc.close());
  const fleet = startFleet({ nc, ...FLEET });
  const [report] = (await Promise.all([fleet.done(), injectGarbage(nc, withGarbage, FLEET.durationS * 1000 * 0.8)])) as [FleetReport, void];
  t.true(await h.analyzer.idle(40_000), "analyzer did not catch up");
  const stored = await readResults(h.influx);
  const byId = (a: StoredRequest, b: StoredRequest) => (a.node + a.requestId < b.node + b.requestId ? -1 : 1);
  return { report, stored: { ...stored, requests: stored.requests.sort(byId) }, expected: fleet.expectedRequests(), stats: h.analyzer.stats(), nc };
}

test("analyzer garbage - 10,000 invalid messages are all dead-lettered and the valid results are those of a clean run", async (t) => {
  t.timeout(60_000);
  const t0 = Date.now();
  const garbage = makeGarbage(GARBAGE);
  // Side by side, each on its own stack; the emulated traffic does not depend on the start time.
  const [clean, dirty] = await Promise.all([runFleet(t, []), runFleet(t, garbage)]);

  // Every piece of garbage is dead-lettered, under the stream it came from, with its reason.
  t.is(dirty.stats.deadLettered, GARBAGE);
  t.is(clean.stats.deadLettered, 0);
  const jsm = await jetstreamManager(dirty.nc);
  const dlq = await jsm.streams.info("DEADLETTER", { subjects_filter: ">" });
  t.is(dlq.state.messages, GARBAGE);
  const perSubject = dlq.state.subjects ?? {};
  t.deepEqual(perSubject, {
    [subjects.deadLetter("POWER")]: garbage.filter((g) => g.subject.startsWith("power.")).length,
    [subjects.deadLetter("WORK")]: garbage.filter((g) => g.subject.startsWith("work.")).length,
    [subjects.deadLetter("REQUESTS")]: garbage.filter((g) => g.subject.startsWith("req.")).length,
  });
  const reasons: Record<string, number> = {};
  const consumer = await jetstream(dirty.nc).consumers.get("DEADLETTER");
  const it = await consumer.fetch({ max_messages: GARBAGE, expires: 10_000 });
  let read = 0;
  for await (const m of it) {
    const d = decodeAs(deadLetter, m.data);
    if (d.ok) reasons[d.value.reason] = (reasons[d.value.reason] ?? 0) + 1;
    if (++read === GARBAGE) break;
  }
  t.is(reasons.version, garbage.filter((g) => g.kind === "version").length);
  t.is((reasons.decode ?? 0) + (reasons.schema ?? 0), garbage.filter((g) => g.kind !== "version").length);

  // The valid traffic gives the same stored results as without garbage, and as the emulator's truth.
  t.deepEqual({ ...dirty.report.truth, perNodeJ: {} }, { ...clean.report.truth, perNodeJ: {} });
  t.deepEqual(Object.values(dirty.report.truth.perNodeJ), Object.values(clean.report.truth.perNodeJ));
  t.is(dirty.stats.join.incompleteWindows, 0);
  t.is(dirty.stats.join.late, 0);
  t.is(dirty.stored.nodeWindows, dirty.report.truth.nodeWindows);
  t.is(dirty.stored.incompleteWindows, 0);
  t.is(dirty.stored.measuredJ, clean.stored.measuredJ);
  t.true(Math.abs(dirty.stored.measuredJ - dirty.report.truth.measuredJ) <= 1e-6 * dirty.report.truth.measuredJ);
  t.deepEqual(dirty.stored.requests, clean.stored.requests);
  t.is(dirty.stored.requests.length, dirty.report.requests.finished);
  const { worstRelErr, problems } = compareWithTruth(dirty.stored.requests, dirty.expected);
  t.deepEqual(problems, []);
  t.true(worstRelErr <= 1e-9, `worst relative error of a request's energy: ${worstRelErr}`);
  t.log(`${GARBAGE} garbage messages, ${dirty.report.published.total} valid ones, ${((Date.now() - t0) / 1000).toFixed(1)} s for both runs`);
});
