import test from "ava";
import type { z } from "zod";
import { decode, encode, isPowerBatchExact, isRequestEventExact, isRequestsMessageExact, isWorkWindowExact, powerBatch, requestEvent, requestsMessage, validate, workWindow } from "../shared/mod.ts";
import { createNodeModel } from "../services/fleet/node-model.ts";
import * as f from "./fixtures.ts";

/**
 * The hand-written checks (shared/messages/fast.ts) must say `true` only of what zod accepts and
 * returns unchanged; and they must say it of ordinary messages, or they are no fast path at all.
 */
type Check = (raw: unknown) => boolean;
const clone = <T>(v: T): T => structuredClone(v);

/** Every value a field might wrongly hold (and some it rightly holds). */
const ODD: unknown[] = [undefined, null, "", "x", "has space", "a".repeat(129), "a".repeat(201), "a".repeat(401), 0, -0, 1, -1, 1.5, 2 ** 53, -(2 ** 53), 9_223_372_036_855, NaN, Infinity, -Infinity, Number.MAX_VALUE, true, false, [], [1], [-1], [1.5], [NaN], [Infinity], ["x"], {}, { a: 1 }, "completions", "chat", "ok", "aborted", "start", "end", "first_token", "request", "request_batch", "power", "work", "sim"];

/** The value with `path` set to `to` (or deleted when `to` is the DELETE mark). */
const DELETE = Symbol("delete");
function mutate(v: unknown, path: (string | number)[], to: unknown): unknown {
  const out = clone(v) as Record<string | number, unknown>;
  let at = out;
  for (const k of path.slice(0, -1)) at = at[k] as Record<string | number, unknown>;
  const last = path[path.length - 1]!;
  if (to === DELETE) delete at[last];
  else at[last] = to;
  return out;
}

/** Paths of every field, nested objects and array elements included (arrays: their first elements). */
function paths(v: unknown, prefix: (string | number)[] = []): (string | number)[][] {
  if (Array.isArray(v)) return v.length > 0 && typeof v[0] === "object" ? paths(v[0], [...prefix, 0]) : v.length > 0 ? [[...prefix, 0]] : [];
  if (typeof v !== "object" || v === null) return [];
  const out: (string | number)[][] = [];
  for (const k of Object.keys(v)) {
    out.push([...prefix, k]);
    out.push(...paths((v as Record<string, unknown>)[k], [...prefix, k]));
  }
  return out;
}

/** The good value, and every mutation of it: each field deleted, set to each odd value, an extra key beside it. */
function variants(good: unknown, extraPaths: (string | number)[][] = []): unknown[] {
  const out: unknown[] = [good];
  for (const p of [...paths(good), ...extraPaths]) {
    out.push(mutate(good, p, DELETE));
    for (const x of ODD) out.push(mutate(good, p, x));
    const parent = p.slice(0, -1);
    // A key beside the field (an array's named property is no message: msgpack decodes none).
    const container = parent.reduce((at: unknown, k) => (at as Record<string | number, unknown>)[k], good);
    if (!Array.isArray(container)) out.push(mutate(good, [...parent, "extra"], 1));
  }
  out.push(null, undefined, 1, "x", [], [good]);
  // And each as the analyzer meets it: decoded from msgpack (holes become undefined, -0 stays).
  return [...out, ...out.map((v) => decode(encode(v)))];
}

function agrees(t: import("ava").ExecutionContext, name: string, schema: z.ZodType, exact: Check, goods: unknown[], extraPaths: (string | number)[][] = []) {
  let fast = 0;
  let checked = 0;
  for (const good of goods) {
    t.true(exact(good), `${name}: a good message takes the fast path: ${JSON.stringify(good).slice(0, 200)}`);
    for (const v of variants(good, extraPaths)) {
      checked++;
      const parsed = schema.safeParse(v);
      if (!exact(v)) continue;
      fast++;
      t.true(parsed.success, `${name}: fast path accepted what zod refuses: ${JSON.stringify(v)?.slice(0, 300)}`);
      if (parsed.success) t.deepEqual(parsed.data, v, `${name}: zod would have returned something else`);
    }
  }
  t.true(fast >= goods.length && fast < checked, `${name}: ${fast} of ${checked} variants took the fast path`);
}

const model = createNodeModel({ node: "fleet-0001", seed: 7, sampleMs: 100, windowMs: 1000 });
const windows = Array.from({ length: 4 }, (_, i) => model.step(Date.UTC(2025, 0, 1) + i * 1000, { abortAll: i === 3 }));
const fleetPower = windows.map((w) => decode(encode(w.power)));
const fleetWork = windows.flatMap((w) => w.work.map((x) => decode(encode(x))));
const fleetEvents = windows.flatMap((w) => w.events.map((e) => decode(encode(e))));

const fullPower = {
  ...clone(f.power),
  instances: ["i0", "i-1"],
  cpu: { energyStartMj: 5, energyEndMj: 9, startTMs: 900, endTMs: 1999, packages: 2 },
  agent: { queued: 1, published: 2, dropped: 0, spilled: 0, sampleErrors: 0, skippedTicks: 3, sampleP99Ms: 0.5, missingGpus: [3] },
  gpus: [{ ...clone(f.power.gpus[0]!), memClockMhz: [1, 2], tempC: [-5, 60], startPowerMw: 1 }],
};
const fullWork = { ...clone(f.work), requests: [{ requestId: "r1", prefillTokens: 1, decodeTokens: 2, awaitingFirstToken: true, decodeCtxTokens: 3, prefillCtxTokens: 4 }] };
const firstToken = { v: 1, kind: "request", msgId: "n1:req:r1:ft", node: "n1", instance: "i0", requestId: "r1", tMs: 1002, event: "first_token" };
const endError = { ...clone(f.requestEnd), status: "error", httpStatus: -1, error: "boom" };
const batch = { v: 1, kind: "request_batch", msgId: "n1:reqs:1", node: "n1", events: [clone(f.requestStart), { junk: true }] };

test("fast checks - POWER: true only where zod accepts and returns the message unchanged", (t) => {
  agrees(t, "power", powerBatch, isPowerBatchExact, [f.power, fullPower, ...fleetPower], [["gpus", 0, "energyMj", 1], ["windowEndMs"]]);
  // Columns of another length than tMs, and a window too short, are zod's refusals too.
  t.false(isPowerBatchExact(mutate(fullPower, ["gpus", 0, "tempC"], [1])));
  t.false(isPowerBatchExact(mutate(fullPower, ["windowEndMs"], 1000.5)));
  t.false(isPowerBatchExact(mutate(fullPower, ["cpu", "energyEndMj"], 1)));
});

test("fast checks - WORK: true only where zod accepts and returns the message unchanged", (t) => {
  agrees(t, "work", workWindow, isWorkWindowExact, [f.work, fullWork, ...fleetWork]);
  t.false(isWorkWindowExact(mutate(fullWork, ["gpus"], [])));
});

test("fast checks - request events: true only where zod accepts and returns the event unchanged", (t) => {
  agrees(t, "event", requestEvent, isRequestEventExact, [f.requestStart, f.requestEnd, firstToken, endError, ...fleetEvents]);
  t.true(fleetEvents.length > 3);
});

test("fast checks - REQUESTS messages: batches and single events", (t) => {
  agrees(t, "requests", requestsMessage, isRequestsMessageExact, [batch, f.requestStart, firstToken]);
  t.false(isRequestsMessageExact({ ...batch, events: [] }));
  t.false(isRequestsMessageExact({ ...batch, events: Array.from({ length: 4097 }, () => 1) }));
});

test("fast checks - validate() answers as zod did, refusals with zod's words", (t) => {
  const bad = mutate(f.power, ["gpus", 0, "powerMw"], [1, -1]);
  t.deepEqual(validate(powerBatch, bad, isPowerBatchExact), validate(powerBatch, bad));
  t.false(validate(powerBatch, bad, isPowerBatchExact).ok);
  const extra = { ...clone(f.work), extra: 1 };
  const d = validate(workWindow, extra, isWorkWindowExact);
  t.deepEqual(d, { ok: true, value: f.work });
  const v2 = { ...clone(f.requestEnd), v: 2 };
  t.deepEqual(validate(requestEvent, v2, isRequestEventExact), { ok: false, reason: "version", detail: "unsupported message version 2" });
  const good = clone(f.requestStart);
  const fast = validate(requestEvent, good, isRequestEventExact);
  t.true(fast.ok && fast.value === good, "an exact message is taken as it is, not copied");
});
