import { execFile } from "node:child_process";
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

/**
 * The fake libnvidia-ml.so (test/fixtures/fake-nvml/fake_nvml.c), compiled with gcc once per
 * process into a temp dir. Each `fakeNvmlCopy()` is a separate file, so dlopen() gives it its own
 * global state: tests that run concurrently never share a fake GPU.
 */
const source = join(dirname(fileURLToPath(import.meta.url)), "..", "fixtures", "fake-nvml", "fake_nvml.c");
let built: Promise<string> | undefined;
let dir: string | undefined;
let copies = 0;

export function buildFakeNvml(): Promise<string> {
  built ??= (async () => {
    dir = mkdtempSync(join(tmpdir(), "fake-nvml-"));
    process.once("exit", () => rmSync(dir!, { recursive: true, force: true }));
    const out = join(dir, "libnvidia-ml.so.1");
    await promisify(execFile)("gcc", ["-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", "-o", out, source, "-lm"]);
    return out;
  })();
  return built;
}

const minimal = new Map<string, Promise<string>>();

/**
 * The same fake, built so that the library exports only `symbols` (a linker version script hides
 * the rest): a driver that lacks entry points, as old drivers and minimal builds do.
 */
export function buildFakeNvmlExporting(symbols: readonly string[]): Promise<string> {
  const key = [...symbols].sort().join(",");
  let p = minimal.get(key);
  if (!p) {
    const n = minimal.size; // taken now: builds run concurrently, each needs its own file
    p = (async () => {
      await buildFakeNvml(); // makes `dir`
      const script = join(dir!, `exports-${n}.map`);
      writeFileSync(script, `{ global: ${symbols.map((s) => `${s};`).join(" ")} local: *; };\n`);
      const out = join(dir!, `libnvidia-ml-exports-${n}.so`);
      await promisify(execFile)("gcc", ["-shared", "-fPIC", "-O2", "-Wall", "-Wextra", "-Werror", `-Wl,--version-script=${script}`, "-o", out, source, "-lm"]);
      return out;
    })();
    minimal.set(key, p);
  }
  return p;
}

export async function fakeNvmlCopy(): Promise<string> {
  const lib = await buildFakeNvml();
  const copy = join(dir!, `libnvidia-ml-${process.pid}-${copies++}.so`);
  copyFileSync(lib, copy);
  return copy;
}

/**
 * Runs `fn` with the FAKE_NVML_* environment set to exactly `env`, then restores it. The fake reads
 * its configuration in nvmlInit_v2, so `fn` must open the library synchronously.
 */
export function withFakeNvmlEnv<T>(env: Record<string, string | number>, fn: () => T): T {
  const saved = Object.entries(process.env).filter(([k]) => k.startsWith("FAKE_NVML_"));
  for (const [k] of saved) delete process.env[k];
  for (const [k, v] of Object.entries(env)) process.env[`FAKE_NVML_${k}`] = String(v);
  try {
    return fn();
  } finally {
    for (const k of Object.keys(env)) delete process.env[`FAKE_NVML_${k}`];
    for (const [k, v] of saved) process.env[k] = v;
  }
}
