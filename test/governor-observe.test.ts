import test from "ava";
import { createObserver, loadProfile, priorClock } from "../services/governor/mod.ts";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ev = (requestId: string, event: "start" | "first_token" | "end", tMs: number, extra: Record<string, unknown> = {}) =>
  ({ v: 1, kind: "request", msgId: `${requestId}:${event}`, node: "n1", instance: "i0", requestId, tMs, event, ...(event === "start" ? { endpoint: "completions", stream: true } : {}), ...(event === "end" ? { status: "ok", promptTokens: 100, outputTokens: 11 } : {}), ...extra }) as never;

test("governor observe - TTFT, TPOT and attainment per request from the tap's events; in-flight carries across periods", (t) => {
  const o = createObserver({ ttftSloMs: 100, tpotSloMs: 10 });
  // r1: TTFT 50, TPOT (150-50)/10 = 10 → met; r2: TTFT 200 → missed; r3: never ends.
  for (const [id, s, f, e] of [["r1", 0, 50, 150], ["r2", 0, 200, 300]] as const) {
    o.onRequestEvent(ev(id, "start", s));
    o.onRequestEvent(ev(id, "first_token", f));
    o.onRequestEvent(ev(id, "end", e));
  }
  o.onRequestEvent(ev("r3", "start", 0));
  o.onWork({ v: 1, kind: "work", msgId: "w1", node: "n1", instance: "i0", gpus: [0], windowStartMs: 0, windowEndMs: 1000, requests: [], inFlight: 3 });
  const p = o.take("n1/i0");
  t.is(p.requests, 2);
  t.is(p.attainment, 0.5);
  t.is(p.ttftP90Ms, 200);
  t.is(p.inFlight, 3);
  t.is(p.inFlightBefore, undefined);
  t.deepEqual(p.mix, { "short-short": 1 });
  o.onWork({ v: 1, kind: "work", msgId: "w2", node: "n1", instance: "i0", gpus: [0], windowStartMs: 1000, windowEndMs: 2000, requests: [], inFlight: 9 });
  o.onWork({ v: 1, kind: "work", msgId: "w0", node: "n1", instance: "i0", gpus: [0], windowStartMs: 0, windowEndMs: 500, requests: [], inFlight: 1 }); // late: ignored
  o.onEnergy({ v: 1, kind: "energy", msgId: "e", node: "n1", instance: "i0", requestId: "r3", startMs: 0, endMs: 1, status: "ok", promptTokens: 1, outputTokens: 10, energyMj: 5000, prefillEnergyMj: 0, decodeEnergyMj: 0, idleShareMj: 0, windows: 1, incomplete: false, config: {} });
  const q = o.take("n1/i0");
  t.is(q.requests, 0);
  t.is(q.attainment, undefined);
  t.is(q.inFlight, 9);
  t.is(q.inFlightBefore, 3);
  t.is(q.jPerOutputToken, 0.5);
});

test("governor observe - attainment over the instance's last requests, across periods, beside the period's own", (t) => {
  const o = createObserver({ ttftSloMs: 100, tpotSloMs: 10 });
  const finish = (id: string, ttftMs: number) => {
    o.onRequestEvent(ev(id, "start", 0));
    o.onRequestEvent(ev(id, "first_token", ttftMs));
    o.onRequestEvent(ev(id, "end", ttftMs + 10));
  };
  for (let i = 0; i < 150; i++) finish(`a${i}`, 50); // met
  t.like(o.take("n1/i0"), { requests: 150, attainment: 1, windowAttainment: 1, windowRequests: 150 });
  for (let i = 0; i < 10; i++) finish(`b${i}`, i < 2 ? 500 : 50); // 2 missed of 10
  t.like(o.take("n1/i0"), { requests: 10, attainment: 0.8, windowAttainment: 158 / 160, windowRequests: 160 });
  for (let i = 0; i < 200; i++) finish(`c${i}`, 50); // the window holds the last 200: the misses roll out
  t.like(o.take("n1/i0"), { windowAttainment: 1, windowRequests: 200 });
});

test("governor observe - requests waiting for their first token, now: a first token, an end or a stale start takes one off", (t) => {
  const o = createObserver({ ttftSloMs: 100, tpotSloMs: 10 });
  t.is(o.waiting("n1/i0"), 0);
  for (const id of ["a", "b", "c", "d"]) o.onRequestEvent(ev(id, "start", 0));
  o.onRequestEvent(ev("a", "start", 0)); // a repeated start counts once
  t.is(o.waiting("n1/i0"), 4);
  o.onRequestEvent(ev("a", "first_token", 50));
  o.onRequestEvent(ev("a", "first_token", 60)); // a repeated first token takes nothing more off
  t.is(o.waiting("n1/i0"), 3);
  o.onRequestEvent(ev("b", "end", 70, { status: "error", outputTokens: 0 })); // failed before its first token
  t.is(o.waiting("n1/i0"), 2);
  o.onRequestEvent(ev("a", "end", 80));
  t.is(o.waiting("n1/i0"), 2, "a finished request that had its first token changes nothing");
  // 10 TTFT SLOs (1,000 ms) after c and d started, a new start: c and d no longer count (their end events may be lost).
  o.onRequestEvent(ev("e", "start", 1001));
  t.is(o.waiting("n1/i0"), 1);
  o.onRequestEvent(ev("c", "end", 1002, { status: "error", outputTokens: 0 }));
  t.is(o.waiting("n1/i0"), 1, "a stale request's end is not taken off twice");
  t.is(o.waiting("n1/other"), 0, "per instance");
});

test("governor profile - the prior is the least mix-weighted energy per token whose latencies meet the SLO", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "gov-profile-"));
  const row = (cls: string, f: number, j: number, ttft: number) => ({ model: "llama-2-70b", tp: 4, workloadClass: cls, smClockMhz: f, jPerOutputToken: j, ttftP90Ms: ttft, tpotP90Ms: 20 });
  const rows = [row("short-long", 1980, 2, 100), row("short-long", 1395, 1.4, 150), row("short-long", 1005, 1.2, 400), row("long-short", 1980, 20, 300), row("long-short", 1395, 14, 450), row("long-short", 1005, 12, 900), { experiment: "other" }];
  writeFileSync(join(dir, "results.json"), JSON.stringify({ rows }));
  const p = loadProfile(join(dir, "results.json"));
  t.is(p.skipped, 1);
  const slo = { ttftSloMs: 500, tpotSloMs: 100 };
  t.is(priorClock(p, "meta-llama/Llama-2-70b-chat-hf", 4, { "short-long": 1 }, slo)?.mhz, 1005, "short-long alone: the cheapest clock, its TTFT 400 ms within the SLO");
  t.is(priorClock(p, "llama-2-70b", 4, { "short-long": 0.5, "long-short": 0.5 }, slo)?.mhz, 1395, "long-short at 1005 MHz misses the TTFT SLO");
  t.is(priorClock(p, "llama-2-70b", 8, { "short-long": 1 }, slo), undefined, "no rows for TP8");
});
