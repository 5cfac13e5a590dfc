import test from "ava";
import { createPacer } from "../services/analyzer/pacing.ts";

type S = "POWER" | "WORK" | "REQUESTS";
const STREAMS: S[] = ["POWER", "WORK", "REQUESTS"];

test("pacing - a stream more than the lead ahead of the slowest reading stream waits until it catches up", async (t) => {
  let now = 0;
  const p = createPacer(STREAMS, { leadMs: 2000, idleMs: 1000, now: () => now });
  t.teardown(() => p.close());
  p.note("POWER", 10_000);
  p.note("WORK", 10_000);
  p.note("REQUESTS", 11_900);
  t.is(p.wait("REQUESTS"), undefined, "within the lead");
  p.note("REQUESTS", 12_100);
  const held = p.wait("REQUESTS");
  t.truthy(held, "2.1 s ahead of POWER and WORK");
  let released = false;
  void held!.then(() => (released = true));
  p.note("POWER", 11_000);
  await Promise.resolve();
  t.false(released, "WORK is still 2.1 s behind");
  now = 100;
  p.note("WORK", 10_200);
  await Promise.resolve();
  t.true(released, "both within the lead now");
  t.like(p.stats(), { holds: 1, longestHoldMs: 100 });
});

test("pacing - streams that read nothing for idleMs (caught up, or empty) hold no one back", async (t) => {
  let now = 0;
  const p = createPacer(STREAMS, { leadMs: 2000, idleMs: 60, now: () => now });
  t.teardown(() => p.close());
  p.note("POWER", 0);
  p.note("REQUESTS", 5000);
  const held = p.wait("REQUESTS");
  t.truthy(held);
  now = 100; // POWER has read nothing since: it has nothing more to give
  await held; // released by the pacer's own timer, not by a message
  t.is(p.wait("REQUESTS"), undefined);
  // WORK never read anything: it never held anyone, and POWER alone is idle now.
  t.is(p.wait("POWER"), undefined);
});

test("pacing - close releases every waiter (a stopping partition must not hang on a held consumer)", async (t) => {
  const p = createPacer(STREAMS, { leadMs: 10, idleMs: 60_000 });
  p.note("POWER", 0);
  p.note("WORK", 0);
  p.note("REQUESTS", 1000);
  const held = p.wait("REQUESTS");
  t.truthy(held);
  p.close();
  await held;
  t.pass();
});
