import test from "ava";
import fc from "fast-check";
import { Point } from "@influxdata/influxdb-client";
import { Line } from "../services/analyzer/line-protocol.ts";

test("line protocol - a Line reads as the client's Point writes it, whatever the names, tag order and values", (t) => {
  const text = fc.string({ unit: fc.constantFrom("a", "b", "Z", "0", ",", "=", " ", '"', "\\", "\n", "\t", "é", "_", "-"), minLength: 1, maxLength: 12 });
  const field = fc.oneof(
    fc.record({ kind: fc.constant("float" as const), v: fc.double({ noNaN: true, noDefaultInfinity: true }) }),
    fc.record({ kind: fc.constant("int" as const), v: fc.integer() }),
    fc.record({ kind: fc.constant("bool" as const), v: fc.boolean() }),
    fc.record({ kind: fc.constant("string" as const), v: text }),
  );
  fc.assert(
    fc.property(text, fc.uniqueArray(fc.tuple(text, text), { selector: ([k]) => k, maxLength: 5 }), fc.uniqueArray(fc.tuple(text, field), { selector: ([k]) => k, minLength: 1, maxLength: 5 }), fc.bigInt({ min: 0n, max: 2n ** 62n }), (m, tags, fields, ns) => {
      const p = new Point(m);
      const l = new Line(m);
      for (const [k, v] of tags) {
        p.tag(k, v);
        l.tag(k, v);
      }
      // Point sorts the fields by key: give them to Line in that order so the lines compare as text.
      for (const [k, f] of [...fields].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
        if (f.kind === "float") (p.floatField(k, f.v), l.floatField(k, f.v));
        else if (f.kind === "int") (p.intField(k, f.v), l.intField(k, f.v));
        else if (f.kind === "bool") (p.booleanField(k, f.v), l.booleanField(k, f.v));
        else (p.stringField(k, f.v), l.stringField(k, f.v));
      }
      p.timestamp(String(ns));
      l.timestamp(String(ns));
      return p.toLineProtocol() === l.toLineProtocol();
    }),
    { numRuns: 2000 },
  );
  t.pass();
});

test("line protocol - a point without fields is no line, and a non-finite float is refused", (t) => {
  t.is(new Line("m").tag("a", "b").toLineProtocol(), undefined);
  t.throws(() => new Line("m").floatField("x", Number.NaN));
  t.throws(() => new Line("m").intField("x", Number.POSITIVE_INFINITY));
});
