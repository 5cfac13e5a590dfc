import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";

/**
 * `joulestream analyzer` as a child process, the way it runs in production, so that kill -9 is a
 * real kill -9 and a crash is a real exit. Its stderr is kept (the last lines) to say which
 * partition it holds and, on a crash, why.
 */
export interface AnalyzerProcess {
  readonly label: string;
  readonly pid: number;
  /** Lines of its stderr so far (the last 400). */
  lines(): string[];
  /** Resolves when a line matching `re` has been written. */
  waitFor(re: RegExp, timeoutMs: number): Promise<boolean>;
  running(): boolean;
  kill9(): Promise<void>;
  /** SIGTERM (its own clean stop: store, checkpoint, close) and the exit code. */
  stop(): Promise<number | null>;
  /** An exit the suite did not ask for (or a non-zero one after SIGTERM): "analyzer a1 (code 1)". */
  crash(): string | undefined;
}

const BIN = fileURLToPath(new URL("../bin/joulestream.mjs", import.meta.url));
const KEEP_LINES = 400;
/** shared/lifecycle.ts onShutdownSignal: the exit status of a clean stop on SIGTERM. */
const CLEAN_STOP_CODE = 143;

export interface AnalyzerProcessOptions {
  label: string;
  natsUrl: string;
  influxUrl: string;
  database: string;
  /** Durable name: replicas with the same name share the work. */
  name: string;
  /** Each line of its stderr, as it comes. */
  onLine?: (line: string) => void;
}

export function spawnAnalyzer(o: AnalyzerProcessOptions): AnalyzerProcess {
  const child: ChildProcess = spawn(process.execPath, [BIN, "analyzer", "--nats", o.natsUrl, "--influx-url", o.influxUrl, "--influx-db", o.database, "--influx-api", "v1", "--name", o.name], { stdio: ["ignore", "ignore", "pipe"] });
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  let partial = "";
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    const parts = (partial + chunk).split("\n");
    partial = parts.pop()!;
    lines.push(...parts);
    if (o.onLine) for (const l of parts) o.onLine(l);
    if (lines.length > KEEP_LINES) lines.splice(0, lines.length - KEEP_LINES);
    for (const w of waiters) w();
  });
  let asked: "kill" | "term" | undefined;
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  let stopHung = false;
  const exited = new Promise<void>((resolve) =>
    child.once("exit", (code, signal) => {
      exit = { code, signal };
      resolve();
    }),
  );
  return {
    label: o.label,
    pid: child.pid ?? -1,
    lines: () => [...lines],
    async waitFor(re, timeoutMs) {
      if (lines.some((l) => re.test(l))) return true;
      return await new Promise<boolean>((resolve) => {
        const check = () => {
          if (!lines.some((l) => re.test(l)) && exit === undefined) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve(lines.some((l) => re.test(l)));
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          resolve(false);
        }, timeoutMs);
        waiters.add(check);
        void exited.then(check);
      });
    },
    running: () => exit === undefined,
    async kill9() {
      asked = "kill";
      if (exit === undefined) child.kill("SIGKILL");
      await exited;
    },
    async stop() {
      asked ??= "term";
      if (exit === undefined) child.kill("SIGTERM");
      // Its stop is bounded by its grace (10 s) and a 5-s drain: past 30 s it hangs, which is a
      // failure to report (as a crash, with its last lines), not a reason to hang the suite.
      let timer: NodeJS.Timeout | undefined;
      const hung = await Promise.race([exited.then(() => false), new Promise<boolean>((r) => (timer = setTimeout(() => r(true), 30_000)))]);
      clearTimeout(timer);
      if (hung) {
        lines.push(`did not exit within 30 s of SIGTERM: killed`);
        stopHung = true;
        child.kill("SIGKILL");
        await exited;
      }
      return exit!.code;
    },
    crash() {
      if (stopHung) return `analyzer ${o.label} did not exit within 30 s of SIGTERM: ${lines.slice(-3).join(" | ")}`;
      if (exit === undefined || asked === "kill") return undefined;
      // After SIGTERM the CLI exits 143 (128 + SIGTERM) once it has stopped cleanly, 1 when stopping failed.
      if (asked === "term" && (exit.code === 0 || exit.code === CLEAN_STOP_CODE)) return undefined;
      const last = lines.slice(-3).join(" | ");
      return `analyzer ${o.label} (${exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`}${asked ? " after SIGTERM" : ""})${last ? `: ${last}` : ""}`;
    },
  };
}
