import { readLines } from "./lines.ts";
import { parseTimestampMs } from "./timestamp.ts";
import { reject, TraceError, type ParseOptions } from "./trace-error.ts";
import { headerNames, parseCount, splitCsv, type TraceRow } from "./trace-row.ts";

/**
 * Azure LLM inference traces (2023 and 2024): `TIMESTAMP,ContextTokens,GeneratedTokens`, one row per
 * request, columns found by name (any order, any case). Streamed row by row.
 */
export async function* parseAzure(path: string, opts: ParseOptions = {}): AsyncGenerator<TraceRow> {
  let cols: { t: number; ctx: number; gen: number } | undefined;
  for await (const { text, line } of readLines(path)) {
    if (text.trim() === "") continue;
    const f = splitCsv(text);
    if (!cols) {
      const names = headerNames(text);
      cols = { t: names.indexOf("timestamp"), ctx: names.indexOf("contexttokens"), gen: names.indexOf("generatedtokens") };
      const missing = Object.entries({ TIMESTAMP: cols.t, ContextTokens: cols.ctx, GeneratedTokens: cols.gen }).filter(([, i]) => i < 0).map(([n]) => n);
      // The header is not optional, also in lenient mode: without it no row means anything.
      if (missing.length) throw new TraceError(path, line, `header must name TIMESTAMP, ContextTokens, GeneratedTokens; missing ${missing.join(", ")} in ${JSON.stringify(text.slice(0, 100))}`);
      continue;
    }
    const tMs = parseTimestampMs(f[cols.t] ?? "");
    const promptTokens = parseCount(f[cols.ctx]);
    const outputTokens = parseCount(f[cols.gen]);
    if (tMs === undefined) reject(opts, new TraceError(path, line, `TIMESTAMP ${JSON.stringify(f[cols.t] ?? "")} is not a timestamp like 2023-11-16 18:17:03.9799600 or 2024-05-10 00:00:00.009930+00:00`));
    else if (promptTokens === undefined) reject(opts, new TraceError(path, line, `ContextTokens ${JSON.stringify(f[cols.ctx] ?? "")} is not a non-negative integer`));
    else if (outputTokens === undefined) reject(opts, new TraceError(path, line, `GeneratedTokens ${JSON.stringify(f[cols.gen] ?? "")} is not a non-negative integer`));
    else yield { line, tMs, promptTokens, outputTokens };
  }
  if (!cols) throw new TraceError(path, 1, "empty file: expected a header TIMESTAMP,ContextTokens,GeneratedTokens");
}
