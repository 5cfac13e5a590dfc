import test from "ava";
import { decodeAs, encode, loadResult, nodeInventory, powerBatch, requestEnergy, requestEvent, subjects, workWindow, deadLetter, decode, encodeWithEncodedArray } from "../shared/mod.ts";
import * as f from "./fixtures.ts";

const cases = [
  ["power batch", powerBatch, f.power],
  ["request start", requestEvent, f.requestStart],
  ["request end", requestEvent, f.requestEnd],
  ["work window", workWindow, f.work],
  ["load result", loadResult, f.load],
  ["request energy", requestEnergy, f.energy],
  ["node inventory", nodeInventory, f.inventory],
] as const;

for (const [name, schema, value] of cases) {
  test(`codec - ${name} survives encode/decode unchanged`, (t) => {
    const d = decodeAs(schema, encode(value));
    t.true(d.ok);
    if (d.ok) t.deepEqual(d.value, value as unknown);
  });
}

test("codec - float64 sample times keep sub-millisecond precision", (t) => {
  const tMs = 1_763_000_000_123.4567;
  const out = decode(encode({ tMs })) as { tMs: number };
  t.is(out.tMs, tMs);
});

test("codec - dead letter carries the original bytes", (t) => {
  const data = new Uint8Array([1, 2, 3]);
  const d = decodeAs(deadLetter, encode({ v: 1, kind: "dead_letter", stream: "POWER", subject: "power.v1.n1", reason: "decode", detail: "x", tMs: 1, data }));
  t.true(d.ok);
  if (d.ok) t.deepEqual([...d.value.data], [1, 2, 3]);
});

test("codec - random bytes are a decode or schema failure, never a throw", (t) => {
  for (let i = 0; i < 200; i++) {
    const bytes = new Uint8Array(1 + (i % 40)).map(() => Math.floor(Math.random() * 256));
    const d = decodeAs(powerBatch, bytes);
    t.false(d.ok);
  }
});

test("codec - a message of another version is refused as such", (t) => {
  const d = decodeAs(workWindow, encode({ ...f.work, v: 2 }));
  t.false(d.ok);
  if (!d.ok) t.is(d.reason, "version");
});

test("schema - power columns of different lengths are refused, naming the column", (t) => {
  const bad = { ...f.power, gpus: [{ ...f.power.gpus[0]!, powerMw: [1] }] };
  const d = decodeAs(powerBatch, encode(bad));
  t.false(d.ok);
  if (!d.ok) t.regex(d.detail, /gpus\.0\.powerMw/);
});

test("subjects - node ids are one token, so permissions can pin a node to its subjects", (t) => {
  t.is(subjects.power("gpu-017"), "power.v1.gpu-017");
  t.throws(() => subjects.power("a.b"));
  t.throws(() => subjects.work("*"));
  t.throws(() => subjects.requests(">"));
});

test("codec - a batch sealed from events encoded one by one is byte for byte the batch encoded whole", (t) => {
  const events = (n: number) => Array.from({ length: n }, (_, i) => ({ v: 1, kind: "request", msgId: `n:req:${i}:end`, tMs: 1.5e12 + i / 3, event: i % 2 ? "end" : "start", promptTokens: i * 7, error: i % 5 || i > 300 ? undefined : "é✓ x".repeat(i) }));
  const envelope = { v: 1, kind: "request_batch", msgId: "n:reqs:r:0", node: "n" };
  for (const n of [0, 1, 15, 16, 300, 70_000]) {
    const evs = events(n);
    const spliced = encodeWithEncodedArray(envelope, "events", evs.map((e) => encode(e)));
    t.deepEqual(Buffer.from(spliced), Buffer.from(encode({ ...envelope, events: evs })), `${n} events`);
  }
  // An envelope of 15 keys: the batch's map header grows from fixmap to map16.
  const wide = Object.fromEntries(Array.from({ length: 15 }, (_, i) => [`k${i}`, i]));
  t.deepEqual(decode(encodeWithEncodedArray(wide, "events", [encode(1)])), { ...wide, events: [1] });
  t.throws(() => encodeWithEncodedArray({ events: [] }, "events", []), { message: /already has events/ });
});
