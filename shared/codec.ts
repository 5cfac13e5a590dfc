import { Packr } from "msgpackr";
import type { z } from "zod";

/**
 * The one msgpackr configuration of the project. Plain maps (no record extension), so any msgpack
 * decoder in any language reads our messages and no decoder depends on structures a previous
 * message defined; float64 numbers stay float64 (no float32 narrowing).
 */
const packr = new Packr({ useRecords: false, mapsAsObjects: true, useFloat32: 0, int64AsType: "number" });

export function encode(value: unknown): Uint8Array {
  return packr.pack(value);
}

/** Raw decode; throws on bytes that are not msgpack. Prefer `decodeAs` at the edges. */
export function decode(bytes: Uint8Array): unknown {
  return packr.unpack(bytes);
}

export type DecodeFailure = { ok: false; reason: "decode" | "version" | "schema"; detail: string };
export type Decoded<T> = { ok: true; value: T } | DecodeFailure;

/**
 * Decode and validate at the edge: the only place where untrusted bytes become typed values.
 * Never throws: a message that fails is permanent and the caller dead-letters it with `detail`.
 */
export function decodeAs<S extends z.ZodType>(schema: S, bytes: Uint8Array): Decoded<z.infer<S>> {
  let raw: unknown;
  try {
    raw = packr.unpack(bytes);
  } catch (err) {
    return { ok: false, reason: "decode", detail: err instanceof Error ? err.message : String(err) };
  }
  return validate(schema, raw);
}

/** The checks of `decodeAs` on a value already decoded (an event inside a batch, say). */
export function validate<S extends z.ZodType>(schema: S, raw: unknown): Decoded<z.infer<S>> {
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
