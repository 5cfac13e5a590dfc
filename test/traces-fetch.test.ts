import test from "ava";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, unlinkSync } from "node:fs";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { TRACE_CATALOG } from "../services/loadgen/trace-catalog.ts";
import { ChecksumMismatchError, defaultTraceCacheDir, fetchTrace } from "../services/loadgen/trace-fetch.ts";
import { TRACES_DIR } from "./helpers/traces.ts";

/**
 * `joulestream traces fetch` against a mirror on loopback (--mirror / `mirror`): no test reaches
 * the network. The carried Azure 2023 files are the published ones, so the catalogue's checksums
 * hold for them as served here.
 */
const root = fileURLToPath(new URL("..", import.meta.url));
const bin = join(root, "bin", "joulestream.mjs");
const run = promisify(execFile);
const dataset = (name: string) => TRACE_CATALOG.find((d) => d.name === name)!;
const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");

type Route = Buffer | ((req: IncomingMessage, res: ServerResponse) => void);

async function mirror(t: import("ava").ExecutionContext, routes: Map<string, Route>) {
  const requests: string[] = [];
  const server = createServer((req, res) => {
    requests.push(req.url!);
    const route = routes.get(req.url!);
    if (route === undefined) return void res.writeHead(404).end();
    if (typeof route === "function") return route(req, res);
    res.writeHead(200, { "content-length": route.length }).end(route);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}

function cacheDir(t: import("ava").ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), "trace-cache-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const carried = (name: string) => readFileSync(join(TRACES_DIR, "azure", name));
const CODE = "AzureLLMInferenceTrace_code.csv";
const CONV = "AzureLLMInferenceTrace_conv.csv";

test("traces fetch - files whose sha256 is the catalogue's are kept; a second fetch finds them present without a request", async (t) => {
  const m = await mirror(t, new Map([[`/azure-2023/${CODE}`, carried(CODE)], [`/azure-2023/${CONV}`, carried(CONV)]]));
  const dir = cacheDir(t);
  const first = await fetchTrace({ dataset: dataset("azure-2023"), dir, mirror: m.url });
  t.deepEqual(first.map((f) => [f.name, f.outcome, f.checkedAgainst]), [[CODE, "downloaded", "catalogue"], [CONV, "downloaded", "catalogue"]]);
  t.deepEqual(readFileSync(join(dir, "azure-2023", CONV)), carried(CONV));
  t.is(readFileSync(join(dir, "azure-2023", "SHA256SUMS"), "utf8"), `${sha256(carried(CODE))}  ${CODE}\n${sha256(carried(CONV))}  ${CONV}\n`, "sha256sum -c format");
  t.is(m.requests.length, 2);

  const again = await fetchTrace({ dataset: dataset("azure-2023"), dir, mirror: m.url });
  t.deepEqual(again.map((f) => f.outcome), ["present", "present"]);
  t.is(m.requests.length, 2, "nothing downloaded again");
});

test("traces fetch - a download whose sha256 differs is refused, named with both checksums, and leaves no file behind", async (t) => {
  const tampered = Buffer.concat([carried(CODE), Buffer.from("2023-11-16 19:14:20.0000000,1,1\n")]);
  const m = await mirror(t, new Map([[`/azure-2023/${CODE}`, tampered]]));
  const dir = cacheDir(t);
  const err = await t.throwsAsync(fetchTrace({ dataset: dataset("azure-2023"), only: [CODE], dir, mirror: m.url }), { instanceOf: ChecksumMismatchError });
  t.is(err!.actualSha256, sha256(tampered));
  t.is(err!.expectedSha256, dataset("azure-2023").files[0]!.sha256!);
  t.regex(err!.message, new RegExp(`${m.url}/azure-2023/${CODE}: sha256 ${sha256(tampered)}, expected ${err!.expectedSha256} \\(from the catalogue\\); nothing was kept`));
  t.deepEqual(readdirSync(join(dir, "azure-2023")), [], "no file, no partial file, no checksum recorded");
});

test("traces fetch - a connection cut mid-file leaves no partial file", async (t) => {
  const m = await mirror(
    t,
    new Map<string, Route>([
      [
        `/azure-2023/${CONV}`,
        (_req, res) => {
          res.writeHead(200, { "content-length": carried(CONV).length });
          res.write(carried(CONV).subarray(0, 100_000), () => res.destroy());
        },
      ],
    ]),
  );
  const dir = cacheDir(t);
  await t.throwsAsync(fetchTrace({ dataset: dataset("azure-2023"), only: [CONV], dir, mirror: m.url }));
  t.deepEqual(readdirSync(join(dir, "azure-2023")), []);
});

test("traces fetch - a file the catalogue has no checksum for is recorded on first download, and later downloads are held to it", async (t) => {
  const ds = dataset("azure-2024");
  const name = ds.files[0]!.name;
  t.is(ds.files[0]!.sha256, undefined, "the case under test: no catalogue checksum");
  const original = Buffer.from("TIMESTAMP,ContextTokens,GeneratedTokens\n2024-05-10 00:00:00.0000000,100,10\n");
  const routes = new Map<string, Route>([[`/azure-2024/${name}`, original]]);
  const m = await mirror(t, routes);
  const dir = cacheDir(t);
  const first = await fetchTrace({ dataset: ds, only: [name], dir, mirror: m.url });
  t.deepEqual(first.map((f) => [f.outcome, f.checkedAgainst, f.sha256]), [["downloaded", "recorded now", sha256(original)]]);
  t.is(readFileSync(join(dir, "azure-2024", "SHA256SUMS"), "utf8"), `${sha256(original)}  ${name}\n`);

  // The published file changes (or a mirror serves another): refused against the recorded checksum.
  unlinkSync(join(dir, "azure-2024", name));
  routes.set(`/azure-2024/${name}`, Buffer.from("TIMESTAMP,ContextTokens,GeneratedTokens\n"));
  const err = await t.throwsAsync(fetchTrace({ dataset: ds, only: [name], dir, mirror: m.url }), { instanceOf: ChecksumMismatchError });
  t.regex(err!.message, /recorded on first download in .*SHA256SUMS/);
  t.false(existsSync(join(dir, "azure-2024", name)));

  routes.set(`/azure-2024/${name}`, original);
  const back = await fetchTrace({ dataset: ds, only: [name], dir, mirror: m.url });
  t.deepEqual(back.map((f) => [f.outcome, f.checkedAgainst]), [["downloaded", "recorded"]]);
});

test("traces fetch - the cache is $XDG_CACHE_HOME/joulestream/traces, else ~/.cache/joulestream/traces", (t) => {
  t.is(defaultTraceCacheDir({ XDG_CACHE_HOME: "/nonexistent/u-cache" }, "/nonexistent/u-home"), "/nonexistent/u-cache/joulestream/traces");
  t.is(defaultTraceCacheDir({}, "/nonexistent/u-home"), "/nonexistent/u-home/.cache/joulestream/traces");
  t.is(defaultTraceCacheDir({ XDG_CACHE_HOME: "relative" }, "/nonexistent/u-home"), "/nonexistent/u-home/.cache/joulestream/traces", "a relative XDG_CACHE_HOME is ignored, as the spec says");
});

test("traces fetch (CLI) - prints the cached paths; a mismatch is one line and exit 1; an unknown name is a usage error", async (t) => {
  const m = await mirror(t, new Map([[`/azure-2023/${CODE}`, carried(CODE)], [`/azure-2023/${CONV}`, Buffer.from("not it\n")]]));
  const dir = cacheDir(t);
  const ok = await run(process.execPath, [bin, "traces", "fetch", `azure-2023/${CODE}`, "--dir", dir, "--mirror", m.url]);
  t.is(ok.stdout, `${join(dir, "azure-2023", CODE)}\n`);
  t.regex(ok.stderr, /sha256 [0-9a-f]{64} verified/);

  const bad = await t.throwsAsync(run(process.execPath, [bin, "traces", "fetch", `azure-2023/${CONV}`, "--dir", dir], { env: { ...process.env, JOULESTREAM_TRACE_MIRROR: m.url } }));
  const e = bad as unknown as { code: number; stderr: string };
  t.is(e.code, 1);
  t.regex(e.stderr, /^joulestream: .*AzureLLMInferenceTrace_conv\.csv: sha256 [0-9a-f]{64}, expected [0-9a-f]{64} \(from the catalogue\)/m);
  t.notRegex(e.stderr, /\n\s+at /, "no stack trace");
  t.false(existsSync(join(dir, "azure-2023", CONV)));

  const unknown = (await t.throwsAsync(run(process.execPath, [bin, "traces", "fetch", "azure-2025", "--dir", dir]))) as unknown as { code: number; stderr: string };
  t.is(unknown.code, 2);
  t.regex(unknown.stderr, /unknown trace "azure-2025": one of azure-2023, azure-2024, mooncake, burstgpt/);
  t.is(m.requests.length, 2, "the unknown name asked nothing of anyone");
});

test("cli bundle - the esbuild build (npm run build's flags) finds the carried traces from dist/chunks", async (t) => {
  // Built into a scratch directory inside the checkout: the bundle finds its package by walking up.
  const scratch = join(root, ".run");
  mkdirSync(scratch, { recursive: true });
  const out = mkdtempSync(join(scratch, "bundle-"));
  t.teardown(() => rmSync(out, { recursive: true, force: true }));
  const script = (JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { scripts: { build: string } }).scripts.build;
  const args = script.replace(/^rm -rf dist && esbuild /, "").split(" ").map((a) => (a === "--outdir=dist" ? `--outdir=${out}` : a));
  t.true(args.includes(`--outdir=${out}`) && args.includes("--splitting"), `the build script is still one esbuild call into dist/ with splitting: ${script}`);
  await run(join(root, "node_modules", ".bin", "esbuild"), args, { cwd: root });
  const { stdout } = await run(process.execPath, [join(out, "joulestream.mjs"), "traces", "list"], { cwd: tmpdir() });
  const paths = stdout.split("carried in the repository")[1]!.trim().split("\n").slice(1).map((l) => l.trim());
  const carriedDir = join(root, "load", "traces");
  t.deepEqual(paths, [join(carriedDir, "azure", CODE), join(carriedDir, "azure", CONV), join(carriedDir, "mooncake", "conversation_trace.jsonl"), join(carriedDir, "mooncake", "synthetic_trace.jsonl")]);
});
