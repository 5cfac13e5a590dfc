import test from "ava";
import fc from "fast-check";
import { idHash, nsTime } from "../services/analyzer/points.ts";

/** What nsTime wrote with BigInt throughout (its first form): the reference for its faster path. */
const reference = (ms: number, extraNs = 0) => (BigInt(Math.round(ms * 1000)) * 1000n + BigInt(extraNs % 1000)).toString();

test("points - nsTime writes what the BigInt arithmetic wrote, at every epoch and extra", (t) => {
  const extra = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 999 }), fc.integer({ min: 0, max: 2 ** 32 - 1 }), fc.string().map(idHash));
  const ms = fc.oneof(
    fc.double({ min: 0, max: 9_223_372_036_854, noNaN: true }),
    fc.double({ min: 1.7e12, max: 1.8e12, noNaN: true }),
    fc.integer({ min: 0, max: 10 }).map((n) => n / 1000),
    fc.constantFrom(0, 0.0004, 0.0005, 0.001, 1, 9_007_199_254_740.991, 9_007_199_254_740.992, 9_007_199_254_741, 9_223_372_036_854),
  );
  fc.assert(
    fc.property(ms, extra, (m, e) => nsTime(m, e) === reference(m, e) && nsTime(m) === reference(m)),
    { numRuns: 20_000 },
  );
  t.is(nsTime(1_735_689_600_000.123_4, 7), "1735689600000123007");
  t.is(nsTime(0, 5), "5");
  t.is(nsTime(9_223_372_036_854), reference(9_223_372_036_854));
  t.throws(() => nsTime(Number.NaN));
});
