import { Packr } from "msgpackr";
import type { z } from "zod";
import { errorMessage } from "./errors.ts";

/**
 * The one msgpackr configuration of the project. Plain maps (no record extension), so any msgpack
 * decoder in any language reads our messages and no decoder depends on structures a previous
 * message defined; float64 numbers stay float64 (no float32 narrowing).
 */
const packr = new Packr({ useRecords: false, mapsAsObjects: true, useFloat32: 0, int64AsType: "number" });

export function encode(value: unknown): Uint8Array {
  return packr.pack(value);
}

/**
 * The bytes of `encode({ ...envelope, [key]: items })`, where `items` are already encoded values:
 * they are copied, not encoded again. The envelope must not have `key`; `key` comes last, as it
 * would in the object literal. A batch's events are encoded one by one as they come, so sealing
 * a batch of hundreds is a copy, not a burst of encoding between two requests.
 */
export function encodeWithEncodedArray(envelope: object, key: string, items: readonly Uint8Array[]): Uint8Array {
  if (Object.hasOwn(envelope, key)) throw new Error(`encodeWithEncodedArray: the envelope already has ${key}`);
  const head = packr.pack(envelope);
  // The envelope's map header (fixmap, map16 or map32) and the entry count it gives.
  const [entries, headerBytes] = head[0]! >= 0x80 && head[0]! <= 0x8f ? [head[0]! & 0x0f, 1] : head[0] === 0xde ? [(head[1]! << 8) | head[2]!, 3] : head[0] === 0xdf ? [new DataView(head.buffer, head.byteOffset).getUint32(1), 5] : [-1, 0];
  if (entries < 0) throw new Error("encodeWithEncodedArray: the envelope is not a map");
  // The header in the envelope's own form (msgpackr writes map16 even for a few keys), wider only if it must be.
  const count = entries + 1;
  const map = headerBytes === 1 && count < 16 ? [0x80 | count] : headerBytes <= 3 && count < 0x10000 ? [0xde, count >> 8, count & 0xff] : [0xdf, ...u32(count)];
  const n = items.length;
  const array = n < 16 ? [0x90 | n] : n < 0x10000 ? [0xdc, n >> 8, n & 0xff] : [0xdd, ...u32(n)];
  const name = packr.pack(key);
  let size = map.length + head.length - headerBytes + name.length + array.length;
  for (const it of items) size += it.length;
  const out = new Uint8Array(size);
  let at = 0;
  const put = (b: ArrayLike<number>) => {
    out.set(b, at);
    at += b.length;
  };
  put(map);
  put(head.subarray(headerBytes));
  put(name);
  put(array);
  for (const it of items) put(it);
  return out;
}

const u32 = (n: number) => [(n >>> 24) & 0xff, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff];

/** Raw decode; throws on bytes that are not msgpack. Prefer `decodeAs` at the edges. */
export function decode(bytes: Uint8Array): unknown {
  return packr.unpack(bytes);
}

export type DecodeFailure = { ok: false; reason: "decode" | "version" | "schema"; detail: string };
export type Decoded<T> = { ok: true; value: T } | DecodeFailure;

/**
 * A hand-written check that says `true` only of a value `schema` accepts and would return as it is
 * (shared/messages/fast.ts): then the value is taken without the schema's parse (and its copy).
 * `false` proves nothing; the schema decides.
 */
export type ExactCheck = (raw: unknown) => boolean;

/**
 * Decode and validate at the edge: the only place where untrusted bytes become typed values.
 * Never throws: a message that fails is permanent and the caller dead-letters it with `detail`.
 */
export function decodeAs<S extends z.ZodType>(schema: S, bytes: Uint8Array, exact?: ExactCheck): Decoded<z.infer<S>> {
  let raw: unknown;
  try {
    raw = packr.unpack(bytes);
  } catch (err) {
    return { ok: false, reason: "decode", detail: errorMessage(err) };
  }
  return validate(schema, raw, exact);
}

/** The checks of `decodeAs` on a value already decoded (an event inside a batch, say). */
export function validate<S extends z.ZodType>(schema: S, raw: unknown, exact?: ExactCheck): Decoded<z.infer<S>> {
  if (exact?.(raw)) return { ok: true, value: raw as z.infer<S> };
  if (typeof raw === "object" && raw !== null && "v" in raw && (raw as { v: unknown }).v !== 1) {
    return { ok: false, reason: "version", detail: `unsupported message version ${JSON.stringify((raw as { v: unknown }).v)}` };
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) return { ok: false, reason: "schema", detail: describeIssues(parsed.error) };
  return { ok: true, value: parsed.data };
}

/** A schema's complaints on one line (`path: message; …`, the first five), for errors and replies. */
export function describeIssues(err: z.ZodError): string {
  return err.issues
    .slice(0, 5)
    .map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`)
    .join("; ");
}
