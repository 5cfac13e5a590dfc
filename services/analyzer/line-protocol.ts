/**
 * InfluxDB line protocol, written directly: one `Line` per point, escaped as the protocol requires
 * and as @influxdata/influxdb-client's Point does (measurement: comma, space; tag keys and values
 * and field keys: comma, equals, space, and CR/LF/tab as \r \n \t; string fields: quote and
 * backslash), with the same value formats (floats as JS prints them, `<n>i` integers, T/F).
 * The analyzer writes about 16 points per node and second; Point kept tags and fields in objects,
 * sorted their keys and escaped character by character on every line, which with the HTTP write
 * was 30 % of the analyzer's CPU. Here a field is formatted once, a string that needs no escaping
 * is not copied, and a tag is put in its place by key as it is added (a point has a handful; a
 * sort at the end allocated its work arrays on every request point, whose tags are not added in
 * key order).
 */
export interface LineProtocolPoint {
  /** The point as one line, or undefined when it has no field (InfluxDB would refuse it). */
  toLineProtocol(): string | undefined;
}

const NEEDS_KEY_ESCAPE = /[,= \r\n\t]/;
const NEEDS_MEASUREMENT_ESCAPE = /[, \r\n\t]/;
const NEEDS_STRING_ESCAPE = /["\\]/;

const escapeKeyChars = (s: string) => s.replace(/[,= \r\n\t]/g, (c) => (c === "\r" ? "\\r" : c === "\n" ? "\\n" : c === "\t" ? "\\t" : `\\${c}`));
export const escapeKey = (s: string): string => (NEEDS_KEY_ESCAPE.test(s) ? escapeKeyChars(s) : s);
const escapeMeasurement = (s: string): string => (NEEDS_MEASUREMENT_ESCAPE.test(s) ? s.replace(/[, \r\n\t]/g, (c) => (c === "\r" ? "\\r" : c === "\n" ? "\\n" : c === "\t" ? "\\t" : `\\${c}`)) : s);
const escapeString = (s: string): string => (NEEDS_STRING_ESCAPE.test(s) ? s.replace(/["\\]/g, (c) => `\\${c}`) : s);

/** Largest magnitude an int64 field takes (what Point checks too). */
const INT64_LIMIT = 9223372036854776e3;

export class Line implements LineProtocolPoint {
  private readonly tagKeys: string[] = [];
  private readonly tagValues: string[] = [];
  /** `key=value` of each field, escaped and formatted, in the order given. */
  private readonly fields: string[] = [];
  private time: string | undefined;

  constructor(private readonly measurement: string) {}

  /** An empty value is left out (line protocol has no empty tag value). Kept in key order. */
  tag(key: string, value: string): this {
    if (value === "") return this;
    const keys = this.tagKeys;
    const values = this.tagValues;
    let i = keys.length;
    keys.push(key);
    values.push(value);
    for (; i > 0 && keys[i - 1]! > key; i--) {
      keys[i] = keys[i - 1]!;
      values[i] = values[i - 1]!;
    }
    keys[i] = key;
    values[i] = value;
    return this;
  }

  floatField(key: string, value: number): this {
    if (!Number.isFinite(value)) throw new Error(`invalid float value for field '${key}': ${value}`);
    return this.field(key, String(value));
  }

  intField(key: string, value: number): this {
    if (!Number.isFinite(value) || value <= -INT64_LIMIT || value >= INT64_LIMIT) throw new Error(`invalid integer value for field '${key}': '${value}'!`);
    return this.field(key, `${Math.floor(value)}i`);
  }

  booleanField(key: string, value: boolean): this {
    return this.field(key, value ? "T" : "F");
  }

  stringField(key: string, value: string): this {
    return this.field(key, `"${escapeString(value)}"`);
  }

  /** Nanoseconds since the epoch, as a decimal string. */
  timestamp(ns: string): this {
    this.time = ns;
    return this;
  }

  private field(key: string, formatted: string): this {
    this.fields.push(escapeKey(key) + "=" + formatted);
    return this;
  }

  toLineProtocol(): string | undefined {
    if (this.fields.length === 0) return undefined;
    const keys = this.tagKeys;
    const values = this.tagValues;
    let line = escapeMeasurement(this.measurement);
    for (let i = 0; i < keys.length; i++) line += "," + escapeKey(keys[i]!) + "=" + escapeKey(values[i]!);
    line += " " + this.fields.join(",");
    return this.time === undefined ? line : line + " " + this.time;
  }
}
