import test from "ava";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { createLibraryRunner } from "../services/lab/library-runner.ts";
import { parseMatrix } from "../services/lab/matrix.ts";
import { createProgress } from "../services/lab/progress.ts";
import { buildReportHtml, readSweepDir } from "../services/lab/report/html.ts";
import { runSweep } from "../services/lab/sweep.ts";

const run = promisify(execFile);
const CHROMIUM = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"].find(existsSync);
const EXPECTED_CHARTS = ["energy-vs-clock", "power-vs-clock", "ttft-vs-clock", "tpot-vs-clock", "slo-heatmap", "energy-vs-batch", "tpot-vs-batch", "energy-vs-tp", "ttft-vs-tp", "pareto"];

/** A small matrix that still has every series the report draws: clocks, TP degrees, batch sizes. */
const matrix = parseMatrix({
  name: "report-test",
  window: { warmupS: 5, measureS: 20 },
  experiments: [
    { name: "grid", axes: { workload: ["short-long", "long-short", "medium-medium"], tp: [2, 4], smClockMhz: [1005, 1395, 1980] } },
    { name: "batch", axes: { workload: ["short-long", "long-short"], tp: [4], maxBatch: [8, 64, 256], smClockMhz: [1980], load: [{ requestsPerS: 30 }] } },
  ],
});

const chromiumArgs = (profile: string) => ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync", `--user-data-dir=${profile}`];

test("report - one self-contained HTML file that headless Chromium renders with every chart drawn", async (t) => {
  if (!CHROMIUM) return t.fail("Chromium is needed for this test: apt-get install -y chromium");
  const dir = mkdtempSync(join(tmpdir(), "lab-report-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  await runSweep({ matrix, outDir: dir, runner: createLibraryRunner(), progress: createProgress({ total: 0, write: () => {} }) });
  const html = await buildReportHtml(readSweepDir(dir));
  t.false(/<(script|link|img)[^>]+(src|href)=/i.test(html), "no external resource");
  t.true(html.includes("The paper's findings beside ours"));
  t.true(html.includes("0.77 Wh/request"), "the published DynamoLLM figures are shown");
  const file = join(dir, "report.html");
  writeFileSync(file, html);

  const { stdout } = await run(CHROMIUM, [...chromiumArgs(join(dir, "profile-dom")), "--dump-dom", `file://${file}`], { timeout: 60_000, maxBuffer: 64 * 1024 * 1024 });
  t.regex(stdout, /<body[^>]*data-probed="yes"/, "the page's load handler ran");
  const figures = [...stdout.matchAll(/<figure data-chart="([^"]+)"([^>]*)>/g)].map((m) => ({ id: m[1]!, attrs: m[2]! }));
  t.deepEqual(figures.map((f) => f.id).sort(), [...EXPECTED_CHARTS].sort());
  for (const f of figures) t.regex(f.attrs, /data-drawn="yes"/, `${f.id} was laid out with marks: ${f.attrs}`);

  const shot = join(dir, "report.png");
  await run(CHROMIUM, [...chromiumArgs(join(dir, "profile-shot")), `--screenshot=${shot}`, "--window-size=1400,4000", `file://${file}`], { timeout: 60_000 });
  t.true(statSync(shot).size > 100_000, "the screenshot is not a blank page");
});
