import test from "ava";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The house's layers (README: Architecture): shared/ is the contract and the pure math and imports
 * nothing of ours but itself; a service (agent, analyzer, loadgen, simnode, governor) imports shared/ and its
 * own files only; an app (cli, lab, fleet, bench, infra, faults) composes services through their mod.ts and
 * nothing deeper. Tests may reach anywhere. An arrow never points up.
 */
const root = fileURLToPath(new URL("..", import.meta.url));
const SERVICES = ["agent", "analyzer", "loadgen", "simnode", "governor"];
const files = execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard", "*.ts"], { cwd: root, encoding: "utf8" })
  .split("\n")
  .filter((f) => f && !f.startsWith("test/") && !f.startsWith("node_modules/"));

/** Relative import specifiers of a file, static and dynamic, resolved to repository paths. */
function importsOf(file: string): string[] {
  const text = readFileSync(join(root, file), "utf8");
  const specs = [...text.matchAll(/(?:from\s+|import\s*\(\s*)"(\.{1,2}\/[^"]+)"/g)].map((m) => m[1]!);
  return specs.map((s) => normalize(join(dirname(file), s)));
}

const layerOf = (path: string): { layer: "shared" | "service" | "app" | "other"; name: string } => {
  const [top, second] = path.split("/");
  if (top === "shared") return { layer: "shared", name: "shared" };
  if (top === "services" && second && SERVICES.includes(second)) return { layer: "service", name: second };
  if (top === "services" || top === "bench" || top === "infra" || top === "faults") return { layer: "app", name: top === "services" ? second! : top! };
  return { layer: "other", name: top ?? "" };
};

test("layers - shared imports only shared; a service imports shared and itself; apps reach services through mod.ts only", (t) => {
  const wrong: string[] = [];
  for (const file of files) {
    const from = layerOf(file);
    for (const target of importsOf(file)) {
      const to = layerOf(target);
      const arrow = `${file} -> ${relative(".", target)}`;
      if (from.layer === "shared" && to.layer !== "shared") wrong.push(`${arrow} (shared imports only shared)`);
      if (from.layer === "service" && !(to.layer === "shared" || (to.layer === "service" && to.name === from.name))) wrong.push(`${arrow} (a service imports shared/ and its own files only)`);
      if (from.layer === "app" && to.layer === "service" && !/^services\/[a-z]+\/mod\.ts$/.test(target)) wrong.push(`${arrow} (apps use a service through its mod.ts)`);
    }
  }
  t.deepEqual(wrong, []);
});

test("layers - every service has a mod.ts", (t) => {
  for (const s of SERVICES) t.notThrows(() => readFileSync(join(root, "services", s, "mod.ts")), `services/${s}/mod.ts`);
});
