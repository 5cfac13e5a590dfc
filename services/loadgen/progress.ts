/**
 * A one-line progress bar on a TTY (stderr), redrawn at most every `intervalMs`; nothing at all
 * when the stream is not a terminal, so logs and pipes stay clean.
 */
export interface Progress {
  update(p: { sent: number; completed: number; errors: number; total?: number }): void;
  done(): void;
}

export function createProgress(stream: NodeJS.WriteStream = process.stderr, intervalMs = 200): Progress {
  if (!stream.isTTY) return { update() {}, done() {} };
  let last = 0;
  let drawn = false;
  const t0 = Date.now();
  return {
    update(p) {
      const now = Date.now();
      if (now - last < intervalMs) return;
      last = now;
      const width = 30;
      const frac = p.total ? Math.min(1, p.completed / p.total) : 0;
      const bar = p.total ? "█".repeat(Math.round(frac * width)).padEnd(width, "░") : "";
      const of = p.total ? `/${p.total}` : "";
      const line = `${bar} ${p.completed}${of} done, ${p.sent - p.completed} in flight, ${p.errors} failed, ${((now - t0) / 1000).toFixed(0)} s`;
      stream.write(`\r${line.slice(0, (stream.columns ?? 100) - 1)}\x1b[K`);
      drawn = true;
    },
    done() {
      if (drawn) stream.write("\r\x1b[K");
    },
  };
}
