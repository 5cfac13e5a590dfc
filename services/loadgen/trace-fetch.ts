import { createHash, randomBytes } from "node:crypto";
import { createReadStream, createWriteStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { basename, dirname, join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { PermanentError, RetryableError, errorMessage } from "../../shared/errors.ts";
import type { TraceDataset, TraceFile } from "./trace-catalog.ts";

/** Beside the files of a dataset: `sha256sum -c SHA256SUMS` checks them, and `fetch` holds them to it. */
export const CHECKSUMS_FILE = "SHA256SUMS";

/** $XDG_CACHE_HOME/joulestream/traces, else ~/.cache/joulestream/traces (the XDG base directory rule). */
export function defaultTraceCacheDir(env: NodeJS.ProcessEnv = process.env, home: string = homedir()): string {
  const xdg = env.XDG_CACHE_HOME;
  // The spec says a relative XDG_CACHE_HOME is invalid and to be ignored.
  return join(xdg && xdg.startsWith("/") ? xdg : join(home, ".cache"), "joulestream", "traces");
}

/** A download whose sha256 is not the expected one: nothing of it is kept. */
export class ChecksumMismatchError extends PermanentError {
  readonly url: string;
  readonly expectedSha256: string;
  readonly actualSha256: string;
  constructor(url: string, expected: string, actual: string, expectedFrom: string) {
    super("DECODE", `${url}: sha256 ${actual}, expected ${expected} (${expectedFrom}); nothing was kept — the download was corrupted or the published file changed`);
    this.url = url;
    this.expectedSha256 = expected;
    this.actualSha256 = actual;
  }
}

export interface FetchTraceOptions {
  dataset: TraceDataset;
  /** Cache root: the dataset's files go in `dir/<dataset name>/`. */
  dir: string;
  /** Only these files of the dataset (by name); all by default. */
  only?: string[];
  /** Base URL of a mirror laid out as `<mirror>/<dataset>/<file>`, instead of each file's public URL. */
  mirror?: string;
  signal?: AbortSignal;
  log?: (line: string) => void;
}

export interface FetchedFile {
  name: string;
  path: string;
  sha256: string;
  /** present: already in the cache and verified, not downloaded again. */
  outcome: "present" | "downloaded";
  /** What it was checked against: the catalogue, a checksum recorded by an earlier download, or none (recorded now). */
  checkedAgainst: "catalogue" | "recorded" | "recorded now";
}

/**
 * Brings a dataset's files into the cache, each verified: a file already there whose sha256 is the
 * expected one is kept without a request; any other is downloaded to a hidden temporary file beside
 * it, hashed as it arrives, and renamed into place only once its sha256 matches (a failed or
 * mismatched download leaves nothing behind). A file the catalogue has no checksum for is held to
 * the one recorded in SHA256SUMS by its first download.
 */
export async function fetchTrace(opts: FetchTraceOptions): Promise<FetchedFile[]> {
  const { dataset } = opts;
  const log = opts.log ?? (() => {});
  const files = selectFiles(dataset, opts.only);
  const dsDir = join(opts.dir, dataset.name);
  mkdirSync(dsDir, { recursive: true });
  const sumsPath = join(dsDir, CHECKSUMS_FILE);
  const recorded = readChecksums(sumsPath);
  const out: FetchedFile[] = [];
  for (const file of files) {
    const path = join(dsDir, file.name);
    const expected = file.sha256 ?? recorded.get(file.name);
    const checkedAgainst = file.sha256 ? "catalogue" : expected ? "recorded" : "recorded now";
    if (expected && existsSync(path)) {
      const have = await sha256File(path);
      if (have === expected) {
        log(`${dataset.name}/${file.name}: present, sha256 verified`);
        out.push({ name: file.name, path, sha256: have, outcome: "present", checkedAgainst });
        continue;
      }
      log(`${dataset.name}/${file.name}: present but its sha256 is ${have}, not ${expected}: fetching it again`);
    }
    const url = opts.mirror ? `${opts.mirror.replace(/\/+$/, "")}/${dataset.name}/${file.name}` : file.url;
    log(`${dataset.name}/${file.name}: downloading ${url}${file.bytes ? ` (${(file.bytes / 1e6).toFixed(1)} MB)` : ""}`);
    const from = file.sha256 ? "from the catalogue" : `recorded on first download in ${sumsPath}`;
    const sha256 = await download(url, path, expected, from, opts.signal);
    recorded.set(file.name, sha256);
    writeChecksums(sumsPath, recorded);
    log(`${dataset.name}/${file.name}: sha256 ${sha256} ${expected ? "verified" : "recorded (first download: later fetches are held to it)"}`);
    out.push({ name: file.name, path, sha256, outcome: "downloaded", checkedAgainst });
  }
  return out;
}

function selectFiles(dataset: TraceDataset, only: string[] | undefined): TraceFile[] {
  if (!only?.length) return dataset.files;
  return only.map((name) => {
    const f = dataset.files.find((x) => x.name === name);
    if (!f) throw new PermanentError("NOT_FOUND", `${dataset.name} has no file ${JSON.stringify(name)} (it has ${dataset.files.map((x) => x.name).join(", ")})`);
    return f;
  });
}

/** Streams `url` into a temporary file beside `path`, hashing it; renames it into place only if verified. */
async function download(url: string, path: string, expected: string | undefined, expectedFrom: string, signal: AbortSignal | undefined): Promise<string> {
  const part = join(dirname(path), `.${basename(path)}.part-${process.pid}-${randomBytes(4).toString("hex")}`);
  // Created here, synchronously, and opened below without O_CREAT ("r+"): a write stream opens its file
  // asynchronously, so one allowed to create it could do so after a failed download has cleaned up.
  writeFileSync(part, "", { flag: "wx" });
  try {
    let res: Response;
    try {
      res = await fetch(url, { redirect: "follow", ...(signal ? { signal } : {}) });
    } catch (err) {
      throw new RetryableError("UNAVAILABLE", `${url}: ${errorMessage(err)}`, err);
    }
    if (!res.ok || !res.body) {
      const msg = `${url}: HTTP ${res.status} ${res.statusText}`.trim();
      throw res.status === 404 || res.status === 410 ? new PermanentError("NOT_FOUND", msg) : new RetryableError("UNAVAILABLE", msg);
    }
    const hash = createHash("sha256");
    await pipeline(
      Readable.fromWeb(res.body as import("node:stream/web").ReadableStream<Uint8Array>),
      async function* (chunks: AsyncIterable<Buffer>) {
        for await (const c of chunks) {
          hash.update(c);
          yield c;
        }
      },
      // An abort reaches here through the response body (fetch was given the signal).
      createWriteStream(part, { flags: "r+" }),
    );
    const actual = hash.digest("hex");
    if (expected && actual !== expected) throw new ChecksumMismatchError(url, expected, actual, expectedFrom);
    renameSync(part, path);
    return actual;
  } finally {
    // Renamed on success; on any failure (HTTP, network, abort, mismatch) nothing partial stays.
    rmSync(part, { force: true });
  }
}

export async function sha256File(path: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const c of createReadStream(path)) hash.update(c as Buffer);
  return hash.digest("hex");
}

/** `sha256sum` format: "<64 hex>  <name>" per line; other lines are not ours and are ignored. */
function readChecksums(path: string): Map<string, string> {
  const sums = new Map<string, string>();
  if (!existsSync(path)) return sums;
  for (const line of readFileSync(path, "utf8").split("\n")) {
    const m = /^([0-9a-f]{64}) [ *](.+)$/.exec(line.trim());
    if (m) sums.set(m[2]!, m[1]!);
  }
  return sums;
}

function writeChecksums(path: string, sums: Map<string, string>): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, [...sums].sort(([a], [b]) => a.localeCompare(b)).map(([name, sha]) => `${sha}  ${name}\n`).join(""));
  renameSync(tmp, path);
}
