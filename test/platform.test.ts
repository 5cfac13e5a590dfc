import test from "ava";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { nuid } from "@nats-io/nuid";

/**
 * What the install needs of the platform (issue 17's papercuts): the Node versions package.json
 * states, and the three dependencies whose install scripts npm 11 blocks (package.json allowScripts
 * denies them) working without them, from the prebuilt packages npm installs anyway.
 */
const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { engines: { node: string }; allowScripts: Record<string, boolean> };
const require = createRequire(import.meta.url);

test("platform - this Node satisfies package.json engines (>= 20.8), and @nats-io/nuid (which declares >= 22) works on it", (t) => {
  t.is(pkg.engines.node, ">=20.8");
  const [major, minor] = process.versions.node.split(".").map(Number) as [number, number];
  t.true(major > 20 || (major === 20 && minor >= 8), process.version);
  // nuid needs only globalThis.crypto.getRandomValues (Node >= 19): ids are 22 characters and unique.
  const ids = new Set(Array.from({ length: 10_000 }, () => nuid.next()));
  t.is(ids.size, 10_000);
  t.true([...ids].every((id) => /^[0-9A-Za-z]{22}$/.test(id)));
});

test("platform - esbuild, koffi and msgpackr's native extension work without their install scripts (allowScripts denies them)", async (t) => {
  t.deepEqual(pkg.allowScripts, { esbuild: false, koffi: false, "msgpackr-extract": false });
  // esbuild: the platform binary comes as an optional dependency; the postinstall only optimizes the shim.
  const esbuild = require("esbuild") as typeof import("esbuild");
  t.is(esbuild.transformSync("const a: number = 1", { loader: "ts" }).code.trim(), "const a = 1;");
  // koffi: a prebuilt module for the platform ships inside the package.
  const koffi = (await import("koffi")).default;
  const libc = koffi.load("libc.so.6");
  const getpid = libc.func("int getpid()");
  t.is(getpid(), process.pid);
  // msgpackr-extract: its prebuilt platform package is found at run time.
  if (process.platform === "linux" && process.arch === "x64") t.true((require("msgpackr") as { isNativeAccelerationEnabled: boolean }).isNativeAccelerationEnabled);
});
