/**
 * Trace timestamps to epoch ms without losing precision: `Date.parse` stops at milliseconds and
 * rejects 7 fractional digits, and the Azure traces have both 2023's `2023-11-16 18:17:03.9799600`
 * (7 digits, no zone: UTC) and 2024's `2024-05-10 00:00:00.009930+00:00` (6 digits or none, UTC
 * offset). Returns undefined for anything else.
 */
const TS_RE = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d{1,9}))?\s*(Z|[+-]\d{2}(?::?\d{2})?)?$/i;

export function parseTimestampMs(s: string): number | undefined {
  const m = TS_RE.exec(s.trim());
  if (!m) return undefined;
  const [, y, mo, d, h, mi, se, frac, zone] = m;
  const month = Number(mo), day = Number(d), hour = Number(h), min = Number(mi), sec = Number(se);
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60) return undefined;
  let ms = Date.UTC(Number(y), month - 1, day, hour, min, sec);
  if (new Date(ms).getUTCDate() !== day) return undefined; // 31 February
  if (frac) ms += Number(frac) / 10 ** (frac.length - 3);
  if (zone && zone.toUpperCase() !== "Z") {
    const sign = zone[0] === "-" ? -1 : 1;
    const digits = zone.slice(1).replace(":", "");
    const offMin = Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2, 4) || "0");
    ms -= sign * offMin * 60_000;
  }
  return ms;
}
