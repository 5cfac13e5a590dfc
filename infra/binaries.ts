import { spawn } from "node:child_process";
import { access, constants } from "node:fs/promises";
import { delimiter, join } from "node:path";
import { PermanentError } from "../shared/errors.ts";

export type ServerBinary = "nats-server" | "influxd";

/** Debian package providing each binary (bookworm: nats-server 2.9.10, influxdb 1.6.7). */
export const DEBIAN_PACKAGES: Record<ServerBinary, string> = { "nats-server": "nats-server", influxd: "influxdb" };
export const INSTALL_COMMAND = "sudo apt-get install -y nats-server influxdb";

/** Debian installs nats-server in /usr/sbin, which a non-root PATH often lacks. */
const EXTRA_DIRS = ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"];

/** PATH, then the usual system directories. */
export function defaultSearchDirs(path: string | undefined = process.env.PATH): string[] {
  return [...new Set([...(path ?? "").split(delimiter).filter(Boolean), ...EXTRA_DIRS])];
}

/** The executable's path, looked up in PATH, then in the usual system directories. */
export async function findBinary(name: ServerBinary, dirs: readonly string[] = defaultSearchDirs()): Promise<string | undefined> {
  for (const dir of dirs) {
    const candidate = join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here; next directory
    }
  }
  return undefined;
}

export interface EnsureBinariesOptions {
  /** Install missing packages with apt-get when running as root (default true). */
  install?: boolean;
  log?: (line: string) => void;
  /** Injected for tests: where to look (default: PATH and the system directories). */
  searchDirs?: readonly string[];
  isRoot?: boolean;
  runApt?: (args: string[]) => Promise<AptResult>;
}

export interface AptResult {
  code: number;
  output: string;
}

/**
 * Finds nats-server and influxd, installing their Debian packages when they are missing and this
 * process is root. Without root, or with install disabled, a missing binary is a PermanentError
 * that gives the install command.
 */
export async function ensureBinaries(names: readonly ServerBinary[], opts: EnsureBinariesOptions = {}): Promise<Record<ServerBinary, string>> {
  const log = opts.log ?? (() => {});
  const found = await locate(names, opts.searchDirs);
  const missing = names.filter((n) => !found[n]);
  if (missing.length === 0) return found as Record<ServerBinary, string>;

  const isRoot = opts.isRoot ?? process.getuid?.() === 0;
  const packages = missing.map((n) => DEBIAN_PACKAGES[n]);
  if (opts.install === false || !isRoot) {
    throw new PermanentError(
      "NOT_FOUND",
      `${missing.join(" and ")} not found (looked in ${(opts.searchDirs ?? defaultSearchDirs()).join(":")}); install with: ${INSTALL_COMMAND}` +
        (opts.install === false ? "" : " (automatic install needs root)"),
    );
  }

  const runApt = opts.runApt ?? aptGet;
  log(`installing ${packages.join(" ")} with apt-get`);
  let result = await runApt(["install", "-y", "-q", ...packages]);
  if (result.code !== 0) {
    log("apt-get install failed; running apt-get update and trying again");
    const update = await runApt(["update", "-q"]);
    result = update.code === 0 ? await runApt(["install", "-y", "-q", ...packages]) : update;
  }
  if (result.code !== 0) {
    throw new PermanentError("NOT_FOUND", `apt-get could not install ${packages.join(" ")} (exit ${result.code}); install with: ${INSTALL_COMMAND}\n${lastLines(result.output, 10)}`);
  }
  // Debian's packages enable system services (influxdb on :8086 on all interfaces, nats-server on
  // :4222). The local stack never uses them; say so, since they may now be running.
  log("note: the Debian packages may have started system services (influxdb, nats-server); joulestream does not use them: systemctl disable --now influxdb nats-server");

  const after = await locate(names, opts.searchDirs);
  const still = names.filter((n) => !after[n]);
  if (still.length > 0) throw new PermanentError("NOT_FOUND", `${still.join(" and ")} still not found after apt-get install; install with: ${INSTALL_COMMAND}`);
  return after as Record<ServerBinary, string>;
}

async function locate(names: readonly ServerBinary[], dirs: readonly string[] | undefined): Promise<Partial<Record<ServerBinary, string>>> {
  const found: Partial<Record<ServerBinary, string>> = {};
  for (const n of names) {
    const p = await findBinary(n, dirs ?? defaultSearchDirs());
    if (p) found[n] = p;
  }
  return found;
}

function aptGet(args: string[]): Promise<AptResult> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const child = spawn("apt-get", args, { env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" }, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout.on("data", (c: Buffer) => chunks.push(c));
    child.stderr.on("data", (c: Buffer) => chunks.push(c));
    child.once("error", (err) => resolve({ code: 127, output: `cannot run apt-get: ${err.message}` }));
    child.once("close", (code) => resolve({ code: code ?? 1, output: Buffer.concat(chunks).toString("utf8") }));
  });
}

function lastLines(text: string, n: number): string {
  return text.trimEnd().split("\n").slice(-n).join("\n");
}
