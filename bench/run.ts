/**
 * `npm run bench -- NAME [args]` runs bench/NAME.ts. Each benchmark prints a readable table and, as
 * its last line, one JSON object with its figures.
 */
import { readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";

const here = dirname(fileURLToPath(import.meta.url));
const names = readdirSync(here).filter((f) => f.endsWith(".ts") && f !== "run.ts").map((f) => f.slice(0, -3)).sort();
const name = process.argv[2];
if (!name || name === "--help" || !names.includes(name)) {
  process.stderr.write(`usage: npm run bench -- NAME [args]\n\nbenchmarks:\n${names.map((n) => `  ${n}`).join("\n")}\n`);
  process.exit(name && name !== "--help" ? 2 : 0);
}
process.argv.splice(2, 1);
await import(join(here, `${name}.ts`));
