import { createReadStream } from "node:fs";
import { createInterface } from "node:readline";

/** The lines of a text file, streamed (never the whole file in memory), numbered from 1. */
export async function* readLines(path: string): AsyncGenerator<{ text: string; line: number }> {
  const input = createReadStream(path, { encoding: "utf8", highWaterMark: 256 * 1024 });
  const rl = createInterface({ input, crlfDelay: Infinity });
  let line = 0;
  try {
    for await (const text of rl) {
      line++;
      yield { text: line === 1 && text.charCodeAt(0) === 0xfeff ? text.slice(1) : text, line };
    }
  } finally {
    rl.close();
    input.destroy();
  }
}
