import test from "ava";
import { createLifecycle } from "../shared/lifecycle.ts";

/** createLifecycle, the one way every long-lived component stops (shared/lifecycle.ts). */

const timers = () => process.getActiveResourcesInfo().filter((r) => r === "Timeout").length;

test("lifecycle - stop runs the graceful part once, aborts the signal first, and later calls share it", async (t) => {
  let runs = 0;
  let abortedFirst = false;
  const life = createLifecycle({
    graceMs: 60_000,
    graceful: async (signal) => {
      abortedFirst = signal.aborted;
      runs++;
    },
  });
  t.false(life.stopping);
  t.false(life.signal.aborted);
  const [a, b] = await Promise.all([life.stop(), life.stop()]);
  t.is(a, "graceful");
  t.is(b, "graceful");
  t.is(await life.stop(), "graceful");
  t.is(runs, 1);
  t.true(abortedFirst);
  t.true(life.stopping);
});

test("lifecycle - a graceful part that outlasts the grace is forced, told the grace it had", async (t) => {
  let forcedWith: number | undefined;
  let release!: () => void;
  const life = createLifecycle({
    graceMs: 60_000,
    graceful: () => new Promise<void>((r) => (release = r)),
    force: (graceMs) => {
      forcedWith = graceMs;
      release(); // what force does (destroy sockets) lets the graceful part unwind
    },
  });
  t.is(await life.stop(50), "forced");
  t.is(forcedWith, 50);
});

test.serial("lifecycle - a graceful part that fails fails the stop, and leaves no grace timer behind", async (t) => {
  const before = timers();
  const life = createLifecycle({
    graceMs: 3_600_000,
    graceful: async () => {
      throw new Error("disk gone");
    },
  });
  await t.throwsAsync(life.stop(), { message: "disk gone" });
  t.is(timers(), before, "the hour-long grace timer still holds the event loop");
});
