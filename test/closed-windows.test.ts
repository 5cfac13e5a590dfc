import test from "ava";
import fc from "fast-check";
import { ClosedWindows } from "../services/analyzer/closed-windows.ts";

test("closed windows - runs answer as a set of starts would, through adds in any order, off-grid starts, prunes and a snapshot round trip", (t) => {
  const step = 1000;
  const op = fc.oneof(
    fc.record({ kind: fc.constant("add" as const), at: fc.integer({ min: 0, max: 60 }), off: fc.boolean() }),
    fc.record({ kind: fc.constant("prune" as const), at: fc.integer({ min: 0, max: 60 }), off: fc.boolean() }),
  );
  fc.assert(
    fc.property(fc.array(op, { maxLength: 120 }), (ops) => {
      const c = new ClosedWindows(step);
      let model = new Set<number>();
      for (const o of ops) {
        const x = o.at * step + (o.off ? 137 : 0);
        if (o.kind === "add") {
          c.add(x);
          model.add(x);
        } else {
          c.prune(x);
          model = new Set([...model].filter((s) => s >= x));
        }
      }
      const back = ClosedWindows.fromRuns(step, c.runs());
      for (let k = -1; k <= 62; k++) {
        for (const x of [k * step, k * step + 137]) {
          if (c.has(x) !== model.has(x) || back.has(x) !== model.has(x)) return false;
        }
      }
      return c.size === model.size && back.size === model.size;
    }),
    { numRuns: 2000 },
  );
  t.pass();
});

test("closed windows - a node's hours of in-order windows are one run", (t) => {
  const c = new ClosedWindows(1000);
  for (let w = 0; w < 7200; w++) c.add(1_700_000_000_000 + w * 1000);
  t.deepEqual(c.runs(), [[1_700_000_000_000, 7200]]);
});

test("closed windows - a start off the grid inside a run's span does not hide the run's later starts", (t) => {
  // Found by the property above (seed -1971347820): the off-grid start was inserted as a run of its
  // own inside the span of [50 000, 51 000], and 51 000 was then looked for in it, not found.
  const c = new ClosedWindows(1000);
  c.add(51_000);
  c.add(50_000);
  c.add(50_137);
  t.true(c.has(50_000) && c.has(51_000) && c.has(50_137));
  t.false(c.has(50_500));
  t.is(c.size, 3);
});
