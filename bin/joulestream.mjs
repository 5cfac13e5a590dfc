#!/usr/bin/env node
// The `joulestream` CLI. Sources are TypeScript run through tsx, so there is no build step.
import { register } from "tsx/esm/api";
register();
await import("../services/cli/main.ts");
