#!/usr/bin/env node
// The `joulestream` CLI. Sources are TypeScript run through tsx, so there is no build step.
// Node 20.8 or later (CI runs 20; 22 LTS recommended): say so plainly instead of failing somewhere inside.
const [major, minor] = process.versions.node.split(".").map(Number);
if (major < 20 || (major === 20 && minor < 8)) {
  process.stderr.write(`joulestream needs Node.js 20.8 or later (22 LTS recommended); this is ${process.version}\n`);
  process.exit(1);
}
const { register } = await import("tsx/esm/api");
register();
await import("../services/cli/main.ts");
