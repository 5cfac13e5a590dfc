/**
 * Progress with ETA on stderr: a redrawn bar on a terminal, one line every few seconds otherwise
 * (logs, CI). The ETA counts only points measured in this run (skipped ones cost nothing).
 */
export interface Progress {
  skip(n?: number): void;
  start(label: string): void;
  done(): void;
  finish(): void;
}

export interface ProgressOptions {
  total: number;
  write?: (s: string) => void;
  isTty?: boolean;
  nowMs?: () => number;
  /** Non-TTY: at most one line per this many ms. */
  everyMs?: number;
}

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return "--:--";
  const s = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, "0");
  const ss = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

export function createProgress(o: ProgressOptions): Progress {
  const write = o.write ?? ((s: string) => void process.stderr.write(s));
  const tty = o.isTty ?? Boolean(process.stderr.isTTY);
  const now = o.nowMs ?? (() => performance.now());
  const t0 = now();
  let finished = 0, skipped = 0, measured = 0, label = "", lastLine = -Infinity;

  const line = () => {
    const elapsed = now() - t0;
    const left = o.total - finished;
    const eta = measured > 0 ? (elapsed / measured) * left : NaN;
    const pct = o.total > 0 ? finished / o.total : 1;
    const width = 24;
    const bar = "#".repeat(Math.round(pct * width)).padEnd(width, "-");
    return `sweep [${bar}] ${finished}/${o.total} ${(pct * 100).toFixed(0)}%${skipped ? ` (${skipped} already measured)` : ""} elapsed ${formatDuration(elapsed)} ETA ${formatDuration(left === 0 ? 0 : eta)} ${label}`;
  };
  const draw = (force = false) => {
    if (tty) write(`\r\x1b[2K${line()}`);
    else if (force || now() - lastLine >= (o.everyMs ?? 5000)) {
      lastLine = now();
      write(line() + "\n");
    }
  };
  return {
    skip(n = 1) {
      skipped += n;
      finished += n;
    },
    start(l) {
      label = l;
      draw();
    },
    done() {
      measured++;
      finished++;
      draw();
    },
    finish() {
      label = "";
      draw(true);
      if (tty) write("\n");
    },
  };
}
