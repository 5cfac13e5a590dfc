import { TOKEN_RE } from "../subjects.ts";
import { MAX_BATCH_EVENTS } from "./request.ts";
import { MAX_EPOCH_MS, MAX_REQUEST_ID_CHARS, MIN_WINDOW_MS } from "./common.ts";
import type { PowerBatch } from "./power.ts";
import type { RequestEvent } from "./request.ts";
import type { WorkWindow } from "./work.ts";

/**
 * Hand-written checks for the analyzer's hot message shapes (POWER, WORK, REQUESTS), for the
 * codec's `decodeAs`/`validate` fast path. Each one says `true` only of a value the zod schema
 * accepts *and* would return unchanged: every check of the schema holds, and the object has no key
 * the schema does not name (zod strips those) nor an optional key present as `undefined`. Anything
 * else says `false`, and the caller asks zod, which then accepts (stripping) or refuses with its
 * issues, so a dead letter's reason and detail are zod's as before. They exist because zod copies
 * every object it parses: on a backlog that was a good part of the analyzer's garbage.
 *
 * Arrays are taken as msgpack decodes them: elements only, no named properties beside them.
 * `false` is never wrong (it only costs the zod parse); `true` must be exactly right: the tests
 * check it against zod on a table of good and bad messages (test/messages-fast.test.ts).
 */
type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
/** Own enumerable keys (what zod looks at, and what msgpack decodes to). */
const keyCount = (o: Obj): number => {
  let n = 0;
  for (const _ in o) n++;
  return n;
};
const isNum = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
const isNonNeg = (v: unknown): boolean => isNum(v) && v >= 0;
const isEpochMs = (v: unknown): boolean => isNum(v) && v >= 0 && v <= MAX_EPOCH_MS;
const isCount = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0;
const isInt = (v: unknown): boolean => Number.isSafeInteger(v);
const isStr = (v: unknown): v is string => typeof v === "string";
const isMsgId = (v: unknown): boolean => typeof v === "string" && v.length >= 1 && v.length <= 400;
const isRequestId = (v: unknown): boolean => typeof v === "string" && v.length >= 1 && v.length <= MAX_REQUEST_ID_CHARS;
const isToken = (v: unknown): boolean => typeof v === "string" && TOKEN_RE.test(v);
/** numberColumn (common.ts): an array of numbers in [min, max]. */
const isColumn = (v: unknown, min: number, max: number): v is number[] => {
  if (!Array.isArray(v)) return false;
  for (let i = 0; i < v.length; i++) {
    const x: unknown = v[i];
    if (typeof x !== "number" || !(x >= min && x <= max)) return false;
  }
  return true;
};
const NON_NEG_MAX = Number.MAX_VALUE;
/** Every element passes (an index loop: unlike `every`, it sees an array's holes, as zod does). */
const isArrayOf = (v: unknown, ok: (x: unknown) => boolean): v is unknown[] => {
  if (!Array.isArray(v)) return false;
  for (let i = 0; i < v.length; i++) if (!ok(v[i])) return false;
  return true;
};

/** An optional field: absent (0 keys), right (1 key), or wrong (-1). */
const opt = (v: unknown, ok: (v: unknown) => boolean): 0 | 1 | -1 => (v === undefined ? 0 : ok(v) ? 1 : -1);
const isTrue = (v: unknown): boolean => v === true;
const isCountArray = (v: unknown): boolean => isArrayOf(v, isCount);
const isTokenArray = (v: unknown): boolean => isArrayOf(v, isToken);
/** One optional column of a GPU's samples: absent, or a column of `n` values. Counts the key. */
const optColumn = (v: unknown, min: number, max: number, n: number): 0 | 1 | -1 => (v === undefined ? 0 : isColumn(v, min, max) && v.length === n ? 1 : -1);

function isGpuSamples(g: unknown): boolean {
  if (!isObj(g)) return false;
  if (!isCount(g.gpu) || !(isStr(g.uuid) && g.uuid.length >= 1)) return false;
  if (!isColumn(g.tMs, 0, MAX_EPOCH_MS) || !isColumn(g.powerMw, 0, NON_NEG_MAX)) return false;
  const n = g.tMs.length;
  if (g.powerMw.length !== n) return false;
  let keys = 4;
  let r: number;
  if ((r = optColumn(g.energyMj, 0, NON_NEG_MAX, n)) < 0) return false;
  keys += r;
  if ((r = optColumn(g.smClockMhz, 0, NON_NEG_MAX, n)) < 0) return false;
  keys += r;
  if ((r = optColumn(g.memClockMhz, 0, NON_NEG_MAX, n)) < 0) return false;
  keys += r;
  if ((r = optColumn(g.utilPct, 0, NON_NEG_MAX, n)) < 0) return false;
  keys += r;
  if ((r = optColumn(g.tempC, -NON_NEG_MAX, NON_NEG_MAX, n)) < 0) return false;
  keys += r;
  if ((r = opt(g.energyStartMj, isNonNeg)) < 0) return false;
  keys += r;
  if ((r = opt(g.startTMs, isEpochMs)) < 0) return false;
  keys += r;
  if ((r = opt(g.startPowerMw, isNonNeg)) < 0) return false;
  keys += r;
  return keyCount(g) === keys;
}

function isCpu(c: unknown): boolean {
  if (!isObj(c)) return false;
  const { energyStartMj: es, energyEndMj: ee, startTMs: st, endTMs: et } = c;
  return isNonNeg(es) && isNonNeg(ee) && isEpochMs(st) && isEpochMs(et) && isCount(c.packages) && (ee as number) >= (es as number) && (et as number) >= (st as number) && keyCount(c) === 5;
}

function isAgent(a: unknown): boolean {
  if (!isObj(a)) return false;
  if (!(isCount(a.queued) && isCount(a.published) && isCount(a.dropped) && isCount(a.spilled) && isCount(a.sampleErrors) && isCount(a.skippedTicks))) return false;
  let keys = 6;
  let r: number;
  if ((r = opt(a.sampleP99Ms, isNonNeg)) < 0) return false;
  keys += r;
  if ((r = opt(a.missingGpus, isCountArray)) < 0) return false;
  keys += r;
  return keyCount(a) === keys;
}

const POWER_SOURCES = new Set(["nvml", "dcgm", "sim", "fake"]);

/** `powerBatch` (power.ts) would accept `raw` and return it unchanged. */
export function isPowerBatchExact(raw: unknown): raw is PowerBatch {
  if (!isObj(raw)) return false;
  const m = raw;
  if (m.v !== 1 || m.kind !== "power" || !isMsgId(m.msgId) || !isToken(m.node) || !isCount(m.seq)) return false;
  if (!isEpochMs(m.windowStartMs) || !isEpochMs(m.windowEndMs) || !POWER_SOURCES.has(m.source as string)) return false;
  if ((m.windowEndMs as number) - (m.windowStartMs as number) < MIN_WINDOW_MS) return false;
  if (!isArrayOf(m.gpus, isGpuSamples)) return false;
  let keys = 9;
  let r: number;
  if ((r = opt(m.instances, isTokenArray)) < 0) return false;
  keys += r;
  if ((r = opt(m.cpu, isCpu)) < 0) return false;
  keys += r;
  if ((r = opt(m.jitterP99Ms, isNonNeg)) < 0) return false;
  keys += r;
  if ((r = opt(m.agent, isAgent)) < 0) return false;
  keys += r;
  return keyCount(m) === keys;
}

function isWorkItem(w: unknown): boolean {
  if (!isObj(w)) return false;
  if (!isRequestId(w.requestId) || !isCount(w.prefillTokens) || !isCount(w.decodeTokens)) return false;
  let keys = 3;
  let r: number;
  if ((r = opt(w.awaitingFirstToken, isTrue)) < 0) return false;
  keys += r;
  if ((r = opt(w.decodeCtxTokens, isCount)) < 0) return false;
  keys += r;
  if ((r = opt(w.prefillCtxTokens, isCount)) < 0) return false;
  keys += r;
  return keyCount(w) === keys;
}

/** `workWindow` (work.ts) would accept `raw` and return it unchanged. */
export function isWorkWindowExact(raw: unknown): raw is WorkWindow {
  if (!isObj(raw)) return false;
  const m = raw;
  if (m.v !== 1 || m.kind !== "work" || !isMsgId(m.msgId) || !isToken(m.node) || !isToken(m.instance)) return false;
  if (!isArrayOf(m.gpus, isCount) || m.gpus.length < 1) return false;
  if (!isEpochMs(m.windowStartMs) || !isEpochMs(m.windowEndMs) || (m.windowEndMs as number) - (m.windowStartMs as number) < MIN_WINDOW_MS) return false;
  if (!isArrayOf(m.requests, isWorkItem)) return false;
  let keys = 9;
  let r: number;
  if ((r = opt(m.model, isStr)) < 0) return false;
  keys += r;
  if ((r = opt(m.inFlight, isCount)) < 0) return false;
  keys += r;
  return keyCount(m) === keys;
}

const ENDPOINTS = new Set(["completions", "chat"]);
const STATUSES = new Set(["ok", "aborted", "error"]);

/** `requestEvent` (request.ts) would accept `raw` and return it unchanged. */
export function isRequestEventExact(raw: unknown): raw is RequestEvent {
  if (!isObj(raw)) return false;
  const e = raw;
  if (e.v !== 1 || e.kind !== "request" || !isMsgId(e.msgId) || !isToken(e.node) || !isToken(e.instance) || !isRequestId(e.requestId) || !isEpochMs(e.tMs)) return false;
  // The base's 7 keys and `event`.
  let keys = 8;
  let r: number;
  switch (e.event) {
    case "first_token":
      break;
    case "start":
      if (!ENDPOINTS.has(e.endpoint as string) || typeof e.stream !== "boolean") return false;
      keys += 2;
      if ((r = opt(e.model, isStr)) < 0) return false;
      keys += r;
      if ((r = opt(e.promptTokensHint, isCount)) < 0) return false;
      keys += r;
      if ((r = opt(e.maxTokens, isCount)) < 0) return false;
      keys += r;
      if ((r = opt(e.runId, isStr)) < 0) return false;
      keys += r;
      if ((r = opt(e.workloadClass, isStr)) < 0) return false;
      keys += r;
      break;
    case "end":
      if (!STATUSES.has(e.status as string) || !isCount(e.promptTokens) || !isCount(e.outputTokens)) return false;
      keys += 3;
      if ((r = opt(e.httpStatus, isInt)) < 0) return false;
      keys += r;
      if ((r = opt(e.error, isStr)) < 0) return false;
      keys += r;
      break;
    default:
      return false;
  }
  return keyCount(e) === keys;
}

/**
 * `requestsMessage` (request.ts) would accept `raw` and return it unchanged, except that a batch's
 * `events` would be a copy of the same array (its items are not checked here: `isRequestEventExact`
 * checks each, as `requestEvent` did).
 */
export function isRequestsMessageExact(raw: unknown): boolean {
  if (!isObj(raw)) return false;
  if (raw.kind !== "request_batch") return isRequestEventExact(raw);
  const ev = raw.events;
  if (!(raw.v === 1 && isMsgId(raw.msgId) && isToken(raw.node) && Array.isArray(ev) && ev.length >= 1 && ev.length <= MAX_BATCH_EVENTS && keyCount(raw) === 5)) return false;
  // zod's copy has `undefined` where the array has a hole (msgpack makes none; a caller might).
  for (let i = 0; i < ev.length; i++) if (!(i in ev)) return false;
  return true;
}
