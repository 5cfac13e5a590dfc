/**
 * `joulestream tail … | head`: when the reader closes the pipe, the next write fails with EPIPE
 * (Node ignores SIGPIPE, which would have ended a C program quietly), and an unhandled 'error' on
 * stdout kills the process with a stack trace. A command that only prints exits 0 then, as Unix
 * filters do: there is nothing left to say and no one to say it to. Only for commands with
 * nothing to flush or undo on the way out (a reader, not a publisher).
 */
export function exitWhenReaderGoes(stream: NodeJS.WriteStream = process.stdout, exit: (code: number) => void = (code) => process.exit(code)): void {
  stream.on("error", (err: NodeJS.ErrnoException) => {
    if (err.code === "EPIPE") return exit(0);
    process.stderr.write(`joulestream: cannot write to stdout: ${err.message}\n`);
    exit(1);
  });
}
