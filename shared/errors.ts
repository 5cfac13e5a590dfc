/**
 * Typed errors. Every error says whether retrying can help:
 * - permanent: the input or configuration is wrong; retrying the same thing fails the same way
 *   (dead-letter the message, exit with a usage error);
 * - retryable: the world is temporarily wrong (broker down, database slow); back off and retry.
 * Callers branch on `instanceof` and `code`, never on `message`.
 */
export type ErrorCode =
  | "CONFIG"
  | "DECODE"
  | "SCHEMA"
  | "VERSION"
  | "UNAVAILABLE"
  | "TIMEOUT"
  | "NOT_FOUND"
  | "NOT_SUPPORTED"
  | "PERMISSION"
  | "INTERNAL";

export class JoulestreamError extends Error {
  readonly code: ErrorCode;
  readonly permanent: boolean;
  constructor(code: ErrorCode, message: string, opts: { permanent: boolean; cause?: unknown }) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.permanent = opts.permanent;
  }
}

/** Input or configuration that will never succeed as it is. */
export class PermanentError extends JoulestreamError {
  constructor(code: ErrorCode, message: string, cause?: unknown) {
    super(code, message, { permanent: true, cause });
  }
}

/** A condition that may clear by itself; the caller decides to retry or drop. */
export class RetryableError extends JoulestreamError {
  constructor(code: ErrorCode, message: string, cause?: unknown) {
    super(code, message, { permanent: false, cause });
  }
}

/** A configuration error that names the offending key (`--nats`, `JOULESTREAM_NATS_URL`, `matrix.clocks[2]`). */
export class ConfigError extends PermanentError {
  readonly key: string;
  constructor(key: string, message: string, cause?: unknown) {
    super("CONFIG", `${key}: ${message}`, cause);
    this.key = key;
  }
}

/** Unknown errors are treated as retryable: dropping data is the decision that needs evidence. */
export function isRetryable(err: unknown): boolean {
  return err instanceof JoulestreamError ? !err.permanent : true;
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
