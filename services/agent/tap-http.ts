import type { IncomingMessage, ServerResponse } from "node:http";

/**
 * The request tap's proxy mechanics, apart from what it watches: reading a request body up to a
 * limit, answering in the server's error shape, relaying headers, rewriting the body's
 * `stream_options`, and corking the client's socket so a response leaves in one segment.
 */

/**
 * The tap's own answer, in the shape of the server's errors (vLLM's ErrorResponse: message, type,
 * param, code), so a client parses it as it parses theirs; with the request's id when it has one,
 * as every response of a tracked request does.
 */
export function jsonError(res: ServerResponse, status: number, type: string, message: string, requestId?: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify({ error: { message, type, param: null, code: status } });
  const headers: Record<string, string | number> = { "content-type": "application/json", "content-length": Buffer.byteLength(body) };
  if (requestId !== undefined) headers["x-request-id"] = requestId;
  res.writeHead(status, headers);
  res.end(body);
}

/** The whole request body, or "too_large" past `maxBytes` (declared or read); the rest is drained unread. */
export function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer | "too_large"> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers["content-length"] ?? 0);
    if (declared > maxBytes) return resolve("too_large");
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > maxBytes) {
        req.removeAllListeners("data");
        resolve("too_large");
        req.resume();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

/**
 * Corks the client's socket for the rest of this tick and the next, so that a response's last bytes
 * and its end leave in one segment. Node emits a response's 'end' one tick after the 'data' that
 * completed it (even when both came in one read), and its own cork of a chunked write lasts one
 * tick: without this the chunked terminator went alone (`strace`: a writev, then write "0\r\n\r\n"),
 * and the client woke twice for every request. `end()` uncorks the socket fully; a streamed chunk
 * with more to come leaves two ticks later, in the same turn of the event loop (no timer).
 * Were Node to order these ticks otherwise, the bytes would still go, only in two writes.
 */
export function holdUntilEnd(res: ServerResponse): void {
  const socket = res.socket;
  if (!socket || socket.writableCorked || socket.destroyed) return;
  socket.cork();
  process.nextTick(() => process.nextTick(() => socket.uncork()));
}

/**
 * The request body with `stream_options` added as its first key, without re-serializing the rest
 * (a long prompt is copied once, not parsed back into text). Only for a JSON object that has no
 * `stream_options` and at least one key (`stream: true`), so the result stays valid JSON.
 */
export function withUsageOptions(body: Buffer, options: Record<string, unknown>): Buffer {
  const open = body.indexOf(0x7b); // "{"
  return Buffer.concat([body.subarray(0, open + 1), Buffer.from(`"stream_options":${JSON.stringify(options)},`), body.subarray(open + 1)]);
}

/**
 * The body with a `stream_options` key added last, which JSON parsers (Python's json, pydantic's
 * jiter, JSON.parse) take over the client's earlier one. The rest of the body is not re-serialized:
 * JSON.stringify(JSON.parse(x)) changes numbers past 2^53 (a 64-bit seed) and drops -0, 1e400….
 */
export function withMergedUsageOptions(body: Buffer, streamOptions: Record<string, unknown>): Buffer {
  const close = body.lastIndexOf(0x7d); // "}"
  return Buffer.concat([body.subarray(0, close), Buffer.from(`,"stream_options":${JSON.stringify(streamOptions)}`), body.subarray(close)]);
}

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, so a proxy does not pass them
 * on; Node sets its own for each side.
 */
export const HOP_BY_HOP: ReadonlySet<string> = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"]);
export const REQUEST_DROPPED: ReadonlySet<string> = new Set([...HOP_BY_HOP, "host", "content-length"]);
export const REQUEST_DROPPED_TRACKED: ReadonlySet<string> = new Set([...REQUEST_DROPPED, "x-request-id", "accept-encoding"]);
export const RESPONSE_DROPPED_TRACKED: ReadonlySet<string> = new Set([...HOP_BY_HOP, "x-request-id"]);
export const RESPONSE_DROPPED_STREAM: ReadonlySet<string> = new Set([...RESPONSE_DROPPED_TRACKED, "content-length"]);

/**
 * Raw header pairs (name, value, name, value, …, as `rawHeaders` gives them: names as sent, repeats
 * kept) less those in `drop` (lower case). Arrays rather than header objects copied with spread and
 * `delete`: those turned every request's header objects into dictionaries, which V8 promoted out
 * of the young generation (the largest share of what the tap promoted, by a heap sampling profile).
 */
export function relayed(raw: readonly string[], drop: ReadonlySet<string>): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if (!drop.has(raw[i]!.toLowerCase())) out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}
