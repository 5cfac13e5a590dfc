import test from "ava";
import fc from "fast-check";
import { gco2Of, intensityAt, parseCarbonCsv } from "../shared/carbon.ts";
import { requestPoint } from "../services/analyzer/points.ts";
import type { RequestEnergy } from "../shared/mod.ts";

const T0 = Date.UTC(2024, 5, 1, 12, 0, 0);
const csv = `Interval Start (UTC),CO2 Intensity (g/kWh)\n${new Date(T0).toISOString()},250\n${new Date(T0 + 300_000).toISOString()},300\n${new Date(T0 + 600_000).toISOString()},200\n`;

test("carbon - a CSV export: each value holds until the next, the last for one more step, none before the first", (t) => {
  const s = parseCarbonCsv(csv);
  t.is(s.points.length, 3);
  t.is(intensityAt(s, T0 - 1), undefined);
  t.is(intensityAt(s, T0), 250);
  t.is(intensityAt(s, T0 + 299_999), 250);
  t.is(intensityAt(s, T0 + 300_000), 300);
  t.is(intensityAt(s, T0 + 899_999), 200);
  t.is(intensityAt(s, T0 + 900_000), undefined);
});

test("carbon - lbs/MWh (CAISO's emission-rate reports) becomes g/kWh; epoch seconds are times; a bad row names its line", (t) => {
  const s = parseCarbonCsv(`time,co2 lbs/MWh\n${T0 / 1000},1000\n`);
  t.is(s.points[0]!.tMs, T0);
  t.true(Math.abs(s.points[0]!.gPerKwh - 453.59237) < 1e-9);
  t.throws(() => parseCarbonCsv("time,g\nyesterday,12\n"), { message: /line 2/ });
});

test("carbon - gCO2 is energy in kWh times intensity, additive over energy", (t) => {
  t.is(gco2Of(3.6e6, 400), 400);
  fc.assert(fc.property(fc.double({ min: 0, max: 1e9, noNaN: true }), fc.double({ min: 0, max: 1e9, noNaN: true }), fc.double({ min: 0, max: 2000, noNaN: true }), (a, b, g) => Math.abs(gco2Of(a + b, g) - gco2Of(a, g) - gco2Of(b, g)) <= 1e-9 * (1 + gco2Of(a + b, g))));
});

test("carbon - the analyzer's request point carries gco2 and the intensity when the series covers its start, nothing otherwise", (t) => {
  const s = parseCarbonCsv(csv);
  const r: RequestEnergy = { v: 1, requestId: "r1", node: "n1", instance: "i0", startMs: T0 + 310_000, endMs: T0 + 312_000, status: "ok", energyMj: 7_200_000, prefillEnergyMj: 1_000_000, decodeEnergyMj: 6_200_000, idleShareMj: 0, promptTokens: 100, outputTokens: 50, windows: 3, incomplete: false } as RequestEnergy;
  const line = requestPoint(r, s).toLineProtocol()!;
  t.regex(line, /gco2=0\.6[,\s]/); // 7200 J = 0.002 kWh × 300 g/kWh
  t.regex(line, /grid_gco2_per_kwh=300/);
  t.notRegex(requestPoint({ ...r, startMs: T0 - 10 }, s).toLineProtocol()!, /gco2/);
  t.notRegex(requestPoint(r).toLineProtocol()!, /gco2/);
});
