import test from "ava";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * House rules that would otherwise creep back one file at a time.
 *
 * Tests wait for events, not time: a fixed delay guesses how long something takes, too short on a
 * loaded machine (flaky), too long everywhere else (slow). test/helpers/until.ts has what to use
 * instead: the event (`once(emitter, ...)`, a promise the code returns), `until()` on observable
 * state, `untilSaid()` on a child's output, `withTimeout()` (shared/lifecycle.ts) for a deadline,
 * and `pause()` where time passing is the point, with the reason said at the call.
 */
const root = fileURLToPath(new URL("..", import.meta.url));
const testFiles = execFileSync("git", ["ls-files", "--cached", "--others", "--exclude-standard", "test/*.ts"], { cwd: root, encoding: "utf8" })
  .split("\n")
  // This file names what it looks for.
  .filter((f) => f && !f.startsWith("test/helpers/") && f !== "test/house.test.ts");

/** A call of the global timer, or an import of node's timer module (its promise form is a sleep). */
const RAW_WAITS: { what: string; re: RegExp }[] = [
  { what: "setTimeout(", re: /\bsetTimeout\s*\(/ },
  { what: "the timers module", re: /["'](?:node:)?timers(?:\/promises)?["']/ },
];

test("house - no test file outside test/helpers waits with a raw setTimeout or node:timers", (t) => {
  t.true(testFiles.length > 50, `found only ${testFiles.length} test files: is git listing them?`);
  const found: string[] = [];
  for (const file of testFiles) {
    const lines = readFileSync(join(root, file), "utf8").split("\n");
    lines.forEach((line, i) => {
      for (const { what, re } of RAW_WAITS) if (re.test(line)) found.push(`${file}:${i + 1}: ${what} (use the event, until(), withTimeout(), or pause() with a reason)`);
    });
  }
  t.deepEqual(found, []);
});

test("house - the check sees a raw wait where there is one", (t) => {
  const hits = (line: string) => RAW_WAITS.filter(({ re }) => re.test(line)).map(({ what }) => what);
  t.deepEqual(hits("  await new Promise((r) => setTimeout(r, 100));"), ["setTimeout("]);
  t.deepEqual(hits('import { setTimeout as sleep } from "node:timers/promises";'), ["the timers module"]);
  t.deepEqual(hits("const { setTimeout } = await import('timers/promises');"), ["the timers module"]);
  t.deepEqual(hits('test("a wait past setTimeout\'s 24.8-day limit", ...)'), [], "a name in a title is no call");
});
