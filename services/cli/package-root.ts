import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const PACKAGE_NAME = "joulestream";

/**
 * The directory of joulestream's package.json, found by walking up from a module's URL, or
 * undefined where there is none above it (a bundle copied out of its checkout). The same answer
 * whether the module runs from services/cli/ under tsx or from dist/ or dist/chunks/ in the esbuild
 * bundle, where a fixed number of "../" would point at a different directory for each.
 */
export function packageRoot(from: string | URL = import.meta.url): string | undefined {
  let dir = dirname(fileURLToPath(from));
  for (;;) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest) && readName(manifest) === PACKAGE_NAME) return dir;
    const up = dirname(dir);
    if (up === dir) return undefined;
    dir = up;
  }
}

/** A file the package carries (repository-relative `path`), or undefined where it is not there. */
export function packageFile(path: string, from?: string | URL): string | undefined {
  const root = packageRoot(from);
  const file = root === undefined ? undefined : join(root, path);
  return file !== undefined && existsSync(file) ? file : undefined;
}

function readName(manifest: string): unknown {
  try {
    return (JSON.parse(readFileSync(manifest, "utf8")) as { name?: unknown }).name;
  } catch {
    // Not JSON (or unreadable): some other project's file, not ours; keep walking up.
    return undefined;
  }
}
