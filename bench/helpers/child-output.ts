/**
 * Reading what a benchmark's child processes print: the first line that matches, or the URL a
 * server child announces as its first JSON line (`{"url": …}`: echo-main, the pass-through proxy).
 */
import { createInterface } from "node:readline";

export async function firstMatch(stream: NodeJS.ReadableStream, match: RegExp = /^.*$/): Promise<RegExpExecArray> {
  for await (const line of createInterface({ input: stream })) {
    const m = match.exec(line as string);
    if (m) return m;
  }
  throw new Error(`process ended before printing a line matching ${match}`);
}

export async function printedUrl(stream: NodeJS.ReadableStream): Promise<string> {
  return (JSON.parse((await firstMatch(stream, /^\{.*\}$/))[0]) as { url: string }).url;
}
