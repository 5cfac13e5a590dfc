import test from "ava";
import { DEFAULT_GUARD, freshGuard, guardMove, nextPatience } from "../services/governor/burst-guard.ts";

test("burst guard - boosts to the maximum when more requests wait than its patience, and returns to the period's clock once none waits", (t) => {
  const s = freshGuard();
  t.is(guardMove(s, 0, 1200, 1980), undefined, "nothing waits: no move");
  const up = guardMove(s, 1, 1200, 1980)!;
  t.like(up, { boosted: true, toMhz: 1980 });
  t.regex(up.reason, /1 request\(s\) waiting .* > 0 allowed at 1200 MHz/);
  const boosted = { ...s, boosted: true };
  t.is(guardMove(boosted, 3, 1200, 1980), undefined, "boosted while requests wait: stays");
  t.like(guardMove(boosted, 0, 1200, 1980), { boosted: false, toMhz: 1200 });
  t.is(guardMove({ patience: 2, boosted: false }, 2, 1200, 1980), undefined, "within its patience");
  t.like(guardMove({ patience: 2, boosted: false }, 3, 1200, 1980), { boosted: true });
  t.is(guardMove(s, 5, 1980, 1980), undefined, "the period's clock is the maximum: nothing to boost");
});

test("burst guard - patience grows one per period while every recent request met the SLO, falls to 0 below resetBelow, holds between", (t) => {
  const cfg = { ...DEFAULT_GUARD, maxPatience: 3 };
  let p = 0;
  for (let i = 0; i < 5; i++) p = nextPatience(cfg, p, { windowAttainment: 1, windowRequests: 200 });
  t.is(p, 3, "up to maxPatience");
  t.is(nextPatience(cfg, 3, { windowAttainment: 0.997, windowRequests: 200 }), 3, "between resetBelow and 1: holds");
  t.is(nextPatience(cfg, 3, { windowAttainment: 0.99, windowRequests: 200 }), 0, "below resetBelow: none");
  t.is(nextPatience(cfg, 2, { windowAttainment: 0.5, windowRequests: cfg.minSamples - 1 }), 2, "too few requests to judge: holds");
  t.is(nextPatience(cfg, 2, {}), 2);
});
