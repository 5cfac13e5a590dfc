/** One row of a recorded trace, before it becomes a scheduled request. */
export interface TraceRow {
  /** Line in the file, from 1. */
  line: number;
  /** Arrival time on the trace's own clock, ms (any origin). */
  tMs: number;
  promptTokens: number;
  outputTokens: number;
  hashIds?: number[];
  model?: string;
}

/** A non-negative integer, or undefined (strings like "12", "12.0" accepted; "", "1e3x" not). */
export function parseCount(s: string | undefined): number | undefined {
  if (s === undefined) return undefined;
  const t = s.trim();
  if (!/^\d+(\.0*)?$/.test(t)) return undefined;
  const n = Number(t);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** Splits one CSV line (quotes allowed, no embedded newlines: trace files have none). */
/** A CSV header's column names as the parsers match them: unquoted, trimmed, lower case. */
export function headerNames(line: string): string[] {
  return splitCsv(line).map((s) => s.trim().toLowerCase());
}

export function splitCsv(line: string): string[] {
  if (!line.includes('"')) return line.split(",");
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      out.push(cur);
      cur = "";
    } else cur += c;
  }
  out.push(cur);
  return out;
}
