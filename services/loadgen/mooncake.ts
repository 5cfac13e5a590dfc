import { readLines } from "./lines.ts";
import { reject, TraceError, type ParseOptions } from "./trace-error.ts";
import type { TraceRow } from "./trace-row.ts";
import { errorMessage } from "../../shared/errors.ts";

/**
 * Mooncake traces (JSONL): `{"timestamp": ms, "input_length": n, "output_length": m, "hash_ids": [...]}`,
 * one 512-token block per hash id; requests that share a leading hash id share that prompt prefix.
 */
export async function* parseMooncake(path: string, opts: ParseOptions = {}): AsyncGenerator<TraceRow> {
  let first = true;
  for await (const { text, line } of readLines(path)) {
    if (text.trim() === "") continue;
    // A JSON array is not JSON lines: every row would fail. Said once, even with --lenient.
    if (first && text.trimStart().startsWith("[")) throw new TraceError(path, line, `a JSON array, not JSON lines (one object per line): convert it with jq -c '.[]' ${path} > trace.jsonl`);
    first = false;
    let o: unknown;
    try {
      o = JSON.parse(text);
    } catch (err) {
      reject(opts, new TraceError(path, line, `not JSON: ${errorMessage(err)}`));
      continue;
    }
    const why = check(o);
    if (why) {
      reject(opts, new TraceError(path, line, why));
      continue;
    }
    const r = o as { timestamp: number; input_length: number; output_length: number; hash_ids?: number[] };
    yield { line, tMs: r.timestamp, promptTokens: r.input_length, outputTokens: r.output_length, ...(r.hash_ids ? { hashIds: r.hash_ids } : {}) };
  }
}

const isCount = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

function check(o: unknown): string | undefined {
  if (typeof o !== "object" || o === null || Array.isArray(o)) return "expected a JSON object";
  const r = o as Record<string, unknown>;
  const absent = ["timestamp", "input_length", "output_length"].filter((k) => r[k] === undefined);
  if (absent.length) return `missing ${absent.join(", ")} (have ${Object.keys(r).slice(0, 8).join(", ") || "no fields"})`;
  if (typeof r.timestamp !== "number" || !Number.isFinite(r.timestamp) || r.timestamp < 0) return `timestamp ${JSON.stringify(r.timestamp)} is not a non-negative number of ms`;
  if (!isCount(r.input_length)) return `input_length ${JSON.stringify(r.input_length)} is not a non-negative integer`;
  if (!isCount(r.output_length)) return `output_length ${JSON.stringify(r.output_length)} is not a non-negative integer`;
  if (r.hash_ids !== undefined && (!Array.isArray(r.hash_ids) || !r.hash_ids.every(isCount))) return "hash_ids must be an array of non-negative integers";
  return undefined;
}
