/**
 * Writes the dashboards' provisioning JSON from dashboards.ts (the JSON is generated; edit the
 * TypeScript). `node --import=tsx infra/grafana/generate.ts [--check]` — --check fails when the
 * files on disk differ from what the code generates.
 */
import { readFileSync, writeFileSync, existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { DASHBOARDS } from "./dashboards.ts";

export const DASHBOARD_DIR = join(dirname(fileURLToPath(import.meta.url)), "dashboards");

export function renderDashboards(): Record<string, string> {
  return Object.fromEntries(Object.entries(DASHBOARDS).map(([name, d]) => [join(DASHBOARD_DIR, `${name}.json`), JSON.stringify(d, null, 2) + "\n"]));
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const check = process.argv.includes("--check");
  let stale = 0;
  for (const [path, text] of Object.entries(renderDashboards())) {
    if (check) {
      if (!existsSync(path) || readFileSync(path, "utf8") !== text) {
        stale++;
        process.stderr.write(`stale: ${path}\n`);
      }
    } else writeFileSync(path, text);
  }
  process.exitCode = stale ? 1 : 0;
}
