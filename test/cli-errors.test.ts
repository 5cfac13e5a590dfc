import test from "ava";
import { execFile } from "node:child_process";
import { createServer } from "node:net";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { AddressInfo } from "node:net";

/** What the CLI says when the operating system refuses: one line naming the problem, no stack trace. */
const bin = fileURLToPath(new URL("../bin/joulestream.mjs", import.meta.url));
const run = (args: string[]) =>
  new Promise<{ code: number; stderr: string }>((resolve) => {
    execFile(process.execPath, [bin, ...args], { timeout: 30_000 }, (err, _stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }));
  });

test("cli - a port already taken and an output path that is a file are one-line errors", async (t) => {
  const taken = createServer();
  await new Promise<void>((r) => taken.listen(0, "127.0.0.1", r));
  t.teardown(() => taken.close());
  const port = (taken.address() as AddressInfo).port;
  const sim = await run(["sim", "--port", String(port)]);
  t.is(sim.code, 1);
  t.regex(sim.stderr, new RegExp(`EADDRINUSE.*127\\.0\\.0\\.1:${port} \\(another process listens there`));
  t.notRegex(sim.stderr, /\n\s+at /, "no stack trace");

  const dir = mkdtempSync(join(tmpdir(), "cli-errors-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, "not-a-dir");
  writeFileSync(file, "");
  const sweep = await run(["sweep", "--matrix", fileURLToPath(new URL("../load/matrices/smoke.yaml", import.meta.url)), "--out", file]);
  t.is(sweep.code, 1);
  t.regex(sweep.stderr, /not-a-dir/);
  t.notRegex(sweep.stderr, /\n\s+at /);
});
