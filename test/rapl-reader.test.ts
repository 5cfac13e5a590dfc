import test from "ava";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { JoulestreamError } from "../shared/mod.ts";
import { createRaplReader, raplMeter, wrappedDeltaUj } from "../services/agent/rapl.ts";

let tick = 0;
const clock = { nowMs: () => ++tick };

/** A fake /sys/class/powercap with the given zones: id → [name, energy_uj, max_energy_range_uj]. */
function fakePowercap(t: { teardown(fn: () => void): void }, zones: Record<string, [string, number, number]>) {
  const root = mkdtempSync(join(tmpdir(), "powercap-"));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  for (const [id, [name, uj, max]] of Object.entries(zones)) {
    mkdirSync(join(root, id));
    writeFileSync(join(root, id, "name"), `${name}\n`);
    writeFileSync(join(root, id, "energy_uj"), `${uj}\n`);
    writeFileSync(join(root, id, "max_energy_range_uj"), `${max}\n`);
  }
  writeFileSync(join(root, "README"), "not a zone");
  const set = (id: string, uj: number) => writeFileSync(join(root, id, "energy_uj"), `${uj}\n`);
  return { root, set };
}

test("rapl - lists package zones, and subzones only when asked", (t) => {
  const { root } = fakePowercap(t, {
    "intel-rapl:0": ["package-0", 0, 1000], "intel-rapl:1": ["package-1", 0, 1000], "intel-rapl:0:0": ["core", 0, 1000],
  });
  t.deepEqual(createRaplReader({ clock, root }).zones.map((z) => z.name), ["package-0", "package-1"]);
  t.deepEqual(createRaplReader({ clock, root, subzones: true }).zones.map((z) => z.id), ["intel-rapl:0", "intel-rapl:0:0", "intel-rapl:1"]);
});

test("rapl - energy accumulates across a wrap of energy_uj at max_energy_range_uj", (t) => {
  const { root, set } = fakePowercap(t, { "intel-rapl:0": ["package-0", 1_000, 10_000] });
  const reader = createRaplReader({ clock, root });
  set("intel-rapl:0", 9_000);
  t.is(reader.read()[0]!.energyMj, 8); // 8000 µJ
  set("intel-rapl:0", 500);
  const r = reader.read()[0]!;
  t.is(r.energyMj, 9.5); // + (10000 − 9000) + 500 µJ
  t.is(r.rawUj, 500);
  t.deepEqual(reader.wraps(), { "intel-rapl:0": 1 });
});

test("rapl - wrapped deltas sum to the true energy for any sequence of increments below the range", (t) => {
  fc.assert(fc.property(fc.nat(999_999), fc.array(fc.nat(999_999), { maxLength: 50 }), (start, incs) => {
    const max = 1_000_000;
    let raw = start;
    let total = 0;
    for (const inc of incs) {
      const next = (raw + inc) % max;
      total += wrappedDeltaUj(raw, next, max);
      raw = next;
    }
    return total === incs.reduce((a, b) => a + b, 0);
  }));
  t.pass();
});

test("rapl - a missing powercap tree or an unreadable counter is a permanent error", (t) => {
  const e = t.throws(() => createRaplReader({ clock, root: "/nonexistent/powercap" }), { instanceOf: JoulestreamError });
  t.is(e.code, "NOT_FOUND");
  t.true(e.permanent);
  const { root } = fakePowercap(t, { "intel-rapl:0": ["package-0", 5, 10] });
  writeFileSync(join(root, "intel-rapl:0", "energy_uj"), "garbage");
  t.is(t.throws(() => createRaplReader({ clock, root }), { instanceOf: JoulestreamError }).code, "DECODE");
});

test("rapl - a psys zone beside the packages (the platform, which includes them) is not counted again", (t) => {
  const f = fakePowercap(t, { "intel-rapl:0": ["package-0", 0, 262143328850], "intel-rapl:1": ["psys", 0, 262143328850], "intel-rapl:0:0": ["core", 0, 262143328850] });
  const m = raplMeter(createRaplReader({ clock, root: f.root }));
  f.set("intel-rapl:0", 10_000_000); // the package used 10 J
  f.set("intel-rapl:1", 15_000_000); // the platform, package included, 15 J
  t.is(m.packages, 1, "psys is not a package");
  t.is(m.read().energyMj, 10_000);
});
