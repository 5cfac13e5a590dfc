import test from "ava";
import { decodeAs, encode, loadResult, nodeInventory, powerBatch, requestEnergy, requestEvent, subjects, workWindow, deadLetter, decode } from "../shared/mod.ts";
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
