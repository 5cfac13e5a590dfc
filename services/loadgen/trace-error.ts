import { PermanentError } from "../../shared/errors.ts";

/** A trace row that cannot be read: the message is `file:line: reason`, as compilers write it. */
export class TraceError extends PermanentError {
  readonly file: string;
  readonly line: number;
  readonly reason: string;
  constructor(file: string, line: number, reason: string) {
    super("DECODE", `${file}:${line}: ${reason}`);
    this.file = file;
    this.line = line;
    this.reason = reason;
  }
}

/**
 * Strict parsing (the default) throws the first bad row; lenient parsing skips it, hands it to
 * `onSkip` and goes on (real traces have a stray row now and then).
 */
export interface ParseOptions {
  lenient?: boolean;
  onSkip?: (err: TraceError) => void;
}

export function reject(opts: ParseOptions, err: TraceError): void {
  if (!opts.lenient) throw err;
  opts.onSkip?.(err);
}
