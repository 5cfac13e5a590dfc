import { readLines } from "./lines.ts";
import { reject, TraceError, type ParseOptions } from "./trace-error.ts";
import { headerNames, parseCount, splitCsv, type TraceRow } from "./trace-row.ts";

/**
 * BurstGPT traces: `Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type`, the
 * timestamp in seconds from the trace's start. Failed requests (0 response tokens) are kept: they
 * were load too; a `models` filter keeps only rows of the named models.
 */
export async function* parseBurstGpt(path: string, opts: ParseOptions & { models?: string[] } = {}): AsyncGenerator<TraceRow> {
  let cols: { t: number; model: number; req: number; res: number } | undefined;
  for await (const { text, line } of readLines(path)) {
    if (text.trim() === "") continue;
    const f = splitCsv(text);
    if (!cols) {
      const names = headerNames(text);
      cols = { t: names.indexOf("timestamp"), model: names.indexOf("model"), req: names.indexOf("request tokens"), res: names.indexOf("response tokens") };
      const missing = Object.entries({ Timestamp: cols.t, "Request tokens": cols.req, "Response tokens": cols.res }).filter(([, i]) => i < 0).map(([n]) => n);
      if (missing.length) throw new TraceError(path, line, `header must name Timestamp, Request tokens, Response tokens; missing ${missing.join(", ")}`);
      continue;
    }
    const tRaw = (f[cols.t] ?? "").trim();
    const tS = tRaw === "" ? NaN : Number(tRaw);
    const promptTokens = parseCount(f[cols.req]);
    const outputTokens = parseCount(f[cols.res]);
    const model = cols.model >= 0 ? (f[cols.model] ?? "").trim() : undefined;
    if (!Number.isFinite(tS) || tS < 0) reject(opts, new TraceError(path, line, `Timestamp ${JSON.stringify(tRaw)} is not a non-negative number of seconds`));
    else if (promptTokens === undefined) reject(opts, new TraceError(path, line, `Request tokens ${JSON.stringify(f[cols.req] ?? "")} is not a non-negative integer`));
    else if (outputTokens === undefined) reject(opts, new TraceError(path, line, `Response tokens ${JSON.stringify(f[cols.res] ?? "")} is not a non-negative integer`));
    else if (!opts.models || (model !== undefined && opts.models.includes(model))) yield { line, tMs: tS * 1000, promptTokens, outputTokens, ...(model ? { model } : {}) };
  }
  if (!cols) throw new TraceError(path, 1, "empty file: expected a header Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type");
}
