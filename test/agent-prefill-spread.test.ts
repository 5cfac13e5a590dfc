import test from "ava";
import fc from "fast-check";
import { createPrefillSpread } from "../services/agent/prefill-spread.ts";
import { createWorkTracker } from "../services/agent/work-tracker.ts";
import { workWindow } from "../shared/mod.ts";

const inst = { id: "i0", upstream: "http://127.0.0.1:1", gpus: [0] };

test("prefill spread - prompts waiting for their first token are prefilled first come first served at the rate, none before it arrived, the last token left for the first token's window", (t) => {
  const s = createPrefillSpread({ tokensPerS: 1000 });
  s.arrived("a", 0, 1500);
  s.arrived("b", 200, 600);
  s.arrived("c", 5000, 100);
  // Window 0: a takes the whole second (1,000 tokens), b none.
  t.deepEqual([...s.close(0, 1000, 0)], [["a", 1000]]);
  // Window 1: a's last 499 (its 1,500th is the first token's), then b from 1.499 s on.
  t.deepEqual([...s.close(1000, 2000, 0)], [["a", 499], ["b", 501]]);
  t.is(s.done("a"), 1499);
  // Window 2: what the window's first tokens took (300 tokens: 0.3 s) comes first.
  t.deepEqual([...s.close(2000, 3000, 300)], [["b", 98]]);
  t.is(s.waiting, 2);
  t.deepEqual([...s.close(3000, 4000, 0)], []);
});

test("prefill spread - with a KV cache, a prompt waits, unestimated, until its prompt and max_tokens fit", (t) => {
  const s = createPrefillSpread({ tokensPerS: 1000, kvCapacityTokens: 1000 });
  s.arrived("a", 0, 500, 300);
  s.arrived("b", 0, 400, 100);
  t.deepEqual([...s.close(0, 1000, 0)], [["a", 499]], "b does not fit beside a's 800");
  s.done("a");
  t.deepEqual([...s.close(1000, 2000, 1)], []);
  s.ended("a");
  t.deepEqual([...s.close(2000, 3000, 0)], [["b", 399]]);
});

test("prefill spread - with the engine's queue length, only the oldest (awaiting − waiting) prompts are estimated; one shown queued twice waits, and all behind it, until a scrape shows it admitted", (t) => {
  const s = createPrefillSpread({ tokensPerS: 1000 });
  s.arrived("a", 0, 500);
  s.arrived("b", 0, 600);
  s.engine(100, 1); // a runs, b queues
  s.engine(300, 1); // b still queues: held back (KV), not waiting a step
  t.deepEqual([...s.close(0, 1000, 0)], [["a", 499]], "without the scrapes b would get the 501 tokens after a");
  s.done("a");
  s.engine(1500, 0); // b admitted since 300
  t.deepEqual([...s.close(1000, 2000, 0)], [["b", 599]]);
});

test("prefill spread - a prompt shown queued by one scrape only (a step's wait) is estimated from that scrape; a later scrape showing it queued takes the guess back", (t) => {
  const s = createPrefillSpread({ tokensPerS: 1000 });
  s.arrived("a", 0, 3000);
  s.engine(100, 1);
  t.deepEqual([...s.close(0, 1000, 0)], [["a", 900]]);
  s.engine(1100, 1);
  s.engine(1300, 1);
  t.deepEqual([...s.close(1000, 2000, 0)], [], "queued twice in a row: held back");
});

test("prefill spread - the engine's counts gone stale, the estimate is the KV guess again; a prompt reaching the tap within engineLagMs of a scrape is not counted in it", (t) => {
  const s = createPrefillSpread({ tokensPerS: 1000, engineFreshMs: 2000, engineLagMs: 50 });
  s.arrived("a", 0, 500);
  s.engine(100, 1);
  s.engine(200, 1);
  t.deepEqual([...s.close(0, 1000, 0)], []);
  t.deepEqual([...s.close(3000, 4000, 0)], [["a", 499]], "no scrape for 3.8 s: from the last that showed it queued, by the (unlimited) KV guess");
  const l = createPrefillSpread({ tokensPerS: 1000, engineLagMs: 50 });
  l.arrived("a", 0, 500);
  l.arrived("b", 60, 500);
  l.engine(100, 0); // b reached the tap 40 ms before: maybe not in the engine's queue yet; a runs
  l.engine(200, 0);
  t.deepEqual([...l.close(0, 1000, 0)], [["a", 499], ["b", 500 - 1]]);
});

test("work tracker - with a prefill rate, with or without the engine's counts, a prompt's prefill tokens over its windows add up to its length, the windows before its first token marked, and no window's estimate exceeds the rate", (t) => {
  const req = fc.record({ arriveMs: fc.nat(5000), waitMs: fc.nat(6000), prompt: fc.integer({ min: 1, max: 20_000 }), decode: fc.nat(20) });
  // Scrapes every 250 ms with any queue length (the engine's counts need not agree with the tap's).
  const scrapes = fc.option(fc.array(fc.nat(4), { minLength: 56, maxLength: 56 }), { nil: undefined });
  fc.assert(
    fc.property(fc.array(req, { minLength: 1, maxLength: 12 }), fc.integer({ min: 100, max: 20_000 }), scrapes, (reqs, rate, queued) => {
      const w = createWorkTracker("n", [inst], { prefillTokensPerS: rate });
      type Ev = [number, number, () => void];
      const evs: Ev[] = [];
      reqs.forEach((r, k) => {
        const id = `r${k}`;
        const first = r.arriveMs + r.waitMs;
        evs.push([r.arriveMs, 0, () => w.started("i0", id, r.arriveMs, r.prompt)]);
        evs.push([first, 1, () => (w.prefill("i0", id, r.prompt), w.decode("i0", id, 0))]);
        for (let d = 1; d <= r.decode; d++) evs.push([first + d * 50, 2, () => w.decode("i0", id, 1)]);
        evs.push([first + r.decode * 50 + 1, 3, () => w.ended("i0", id)]);
      });
      queued?.forEach((n, k) => evs.push([k * 250 + 10, 0.5, () => w.engine("i0", k * 250 + 10, { running: 0, waiting: n })]));
      evs.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
      const prefill = new Map<string, number>();
      let e = 0;
      for (let k = 0; k < 14; k++) {
        for (; e < evs.length && evs[e]![0] < (k + 1) * 1000; e++) evs[e]![2]();
        const [win] = w.closeWindow(k * 1000, (k + 1) * 1000);
        if (!workWindow.safeParse(win).success) return false;
        let estimated = 0;
        for (const it of win!.requests) {
          prefill.set(it.requestId, (prefill.get(it.requestId) ?? 0) + it.prefillTokens);
          if (it.awaitingFirstToken) estimated += it.prefillTokens;
        }
        if (estimated > rate + 1e-9) return false;
      }
      return reqs.every((r, k) => prefill.get(`r${k}`) === r.prompt);
    }),
  );
  t.pass();
});

test("work tracker - without a prefill rate, WORK is as before: every prompt token in the first token's window, nothing marked", (t) => {
  const w = createWorkTracker("n", [inst]);
  w.started("i0", "a", 0, 5000);
  t.deepEqual(w.closeWindow(0, 1000)[0]!.requests, []);
  w.prefill("i0", "a", 5000);
  w.decode("i0", "a", 2);
  t.deepEqual(w.closeWindow(1000, 2000)[0]!.requests, [{ requestId: "a", prefillTokens: 5000, prefillCtxTokens: (5000 * 4999) / 2, decodeTokens: 2, decodeCtxTokens: 5001 + 5002 }]);
  // An old agent's WORK item (no awaitingFirstToken) and a new one both pass the contract.
  const base = { v: 1, kind: "work", msgId: "m", node: "n", instance: "i0", gpus: [0], windowStartMs: 0, windowEndMs: 1000 };
  t.true(workWindow.safeParse({ ...base, requests: [{ requestId: "a", prefillTokens: 1, decodeTokens: 0 }] }).success);
  t.true(workWindow.safeParse({ ...base, requests: [{ requestId: "a", prefillTokens: 1, decodeTokens: 0, awaitingFirstToken: true }] }).success);
});

test("prefill spread - with a position cost, a prompt's tokens take longer further into it (∝ k + x), the rate holding at the calibration's position", (t) => {
  // k = 1000, calibrated at position 0: token x takes (1000 + x)/1000 ms at 1000 tokens/s.
  const s = createPrefillSpread({ tokensPerS: 1000, positionCost: { k: 1000, calibrationPosition: 0 } });
  s.arrived("a", 0, 3000);
  // Σ_{x<n} (1000 + x) ≤ 1e6 ms·tokens: n = 732 (733 would take 1001.3 ms).
  t.deepEqual([...s.close(0, 1000, 0)], [["a", 732]]);
  // From 732 on: Σ_{732 ≤ x < 732+n} (1000 + x) ≤ 1e6 → n = 504.
  t.deepEqual([...s.close(1000, 2000, 0)], [["a", 504]]);
  // At the calibration's position the rate is the calibrated one.
  const c = createPrefillSpread({ tokensPerS: 1000, positionCost: { k: 1e9, calibrationPosition: 5000 } });
  c.arrived("b", 0, 5000);
  t.deepEqual([...c.close(0, 1000, 0)], [["b", 1000]]);
  t.throws(() => createPrefillSpread({ tokensPerS: 1, positionCost: { k: 0, calibrationPosition: 0 } }), { instanceOf: RangeError });
});

test("prefill spread - with a position cost, a prompt's estimate never passes its length less the first token's, and a window is never overfilled", (t) => {
  fc.assert(
    fc.property(fc.array(fc.record({ at: fc.nat(5000), len: fc.integer({ min: 1, max: 200_000 }) }), { minLength: 1, maxLength: 8 }), fc.integer({ min: 100, max: 100_000 }), fc.integer({ min: 1000, max: 200_000 }), (ps, rate, k) => {
      const s = createPrefillSpread({ tokensPerS: rate, positionCost: { k, calibrationPosition: 1023.5 } });
      const sorted = [...ps].sort((a, b) => a.at - b.at);
      sorted.forEach((p, i) => s.arrived(`r${i}`, p.at, p.len));
      const total = new Map<string, number>();
      for (let w = 0; w < 30; w++) {
        const out = s.close(w * 1000, (w + 1) * 1000, 0);
        // The window's estimated time at the position-dependent rate fits in it.
        let ms = 0;
        for (const [id, n] of out) {
          const x0 = total.get(id) ?? 0;
          ms += ((n * (k + x0) + (n * (n - 1)) / 2) / (k + 1023.5) / rate) * 1000;
          total.set(id, x0 + n);
        }
        if (ms > 1000 + 1e-6) return false;
      }
      return sorted.every((p, i) => (total.get(`r${i}`) ?? 0) <= p.len - 1);
    }),
  );
  t.pass();
});
