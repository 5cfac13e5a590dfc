import { createWriteStream, type WriteStream } from "node:fs";
import { once } from "node:events";
import type { LoadResult } from "../../shared/messages/load.ts";

/**
 * `--out results.jsonl`: one JSON object per request, the LOAD result with `id` (the request id)
 * first. Writes wait for the file when its buffer is full (backpressure, never an unbounded queue).
 */
export interface ResultsFile {
  write(r: LoadResult): Promise<void>;
  close(): Promise<void>;
}

export function openResultsFile(path: string): ResultsFile {
  const out: WriteStream = createWriteStream(path, { flags: "w" });
  let failed: Error | undefined;
  out.on("error", (err) => (failed = err));
  return {
    async write(r) {
      if (failed) throw failed;
      if (!out.write(JSON.stringify({ id: r.requestId, ...r }) + "\n")) await once(out, "drain");
    },
    async close() {
      if (failed) throw failed;
      out.end();
      await once(out, "finish");
    },
  };
}
