import { hostname, tmpdir } from "node:os";
import { statSync } from "node:fs";
import { join, resolve } from "node:path";
import { z } from "zod";
import type { NatsConnection } from "@nats-io/nats-core";
import { connectNats, natsOptions, replicasConfig, replicasOptions, untilDone, ConfigError, errorMessage } from "../../shared/mod.ts";
import { defineCommand } from "../../shared/command.ts";
import { assertNewRun, runCoordinated } from "./coordinator.ts";
import { createProgress } from "./progress.ts";
import { drainAtExit, openResultsOutbox, type ResultsOutbox } from "./results-outbox.ts";
import { openResultsFile } from "./results-file.ts";
import { runLoad } from "./runner.ts";
import { countRequests, workloadOf, type SourceSpec } from "./source-spec.ts";
import { formatSummary } from "./summary.ts";
import { traceRows, detectFormat } from "./traces.ts";
import { traceStats } from "./transform.ts";
import { startWorker } from "./worker.ts";
import type { LoadResult } from "../../shared/messages/load.ts";
import { loadgenInboxPrefix } from "../../shared/subjects.ts";

const num = z.coerce.number();
const DEFAULT_SPOOL = "joulestream-load-outbox";
const schema = z
  .object({
    trace: z.string().optional(),
    format: z.enum(["azure", "mooncake", "burstgpt"]).optional(),
    lenient: z.boolean().default(false),
    workload: z.string().optional(),
    rate: num.positive().optional(),
    rampTo: num.nonnegative().optional(),
    duration: num.positive().optional(),
    arrival: z.enum(["poisson", "gamma", "constant"]).default("poisson"),
    cv: num.positive().optional(),
    lengths: z.enum(["uniform", "fixed"]).default("uniform"),
    seed: num.int().default(1),
    target: z.array(z.url({ protocol: /^https?$/, error: "expected an http:// or https:// URL" })).default([]),
    api: z.enum(["completions", "chat"]).default("completions"),
    model: z.string().optional(),
    promptMode: z.enum(["token-ids", "text"]).optional(),
    charsPerToken: num.positive().optional(),
    speedup: num.positive().optional(),
    from: num.nonnegative().optional(),
    window: num.positive().optional(),
    limit: num.int().nonnegative().optional(),
    sample: num.gt(0).max(1).optional(),
    maxPromptTokens: num.int().positive().optional(),
    maxOutputTokens: num.int().positive().optional(),
    concurrency: num.int().positive().optional(),
    closedLoop: z.boolean().default(false),
    timeout: num.positive().default(600),
    sloTtftMs: num.positive().optional(),
    sloTpotMs: num.positive().optional(),
    out: z.string().optional(),
    runId: z.string().regex(/^[A-Za-z0-9_-]{1,128}$/, "must be letters, digits, '-' or '_'").optional(),
    header: z.array(z.string().regex(/^[^:]+:.*$/, "must be 'Name: value'")).default([]),
    nats: z.string().optional(),
    creds: z.string().optional(),
    user: z.string().optional(),
    password: z.string().optional(),
    token: z.string().optional(),
    replicas: replicasConfig.shape.replicas,
    workers: num.int().min(1).max(1024).optional(),
    worker: z.boolean().default(false),
    workerId: z.string().regex(/^[A-Za-z0-9_-]{1,128}$/, "must be letters, digits, '-' or '_'").optional(),
    noProgress: z.boolean().default(false),
    spoolDir: z.string().min(1).optional(),
    drainTimeout: num.nonnegative().default(60),
  })
  .superRefine((c, ctx) => {
    if (c.worker) return;
    if (!c.trace && !c.workload) ctx.addIssue({ code: "custom", path: ["trace"], message: "give --trace FILE or --workload CLASS --rate R --duration S" });
    if (c.trace && c.workload) ctx.addIssue({ code: "custom", path: ["workload"], message: "--workload and --trace exclude each other" });
    if (c.workload && (c.rate === undefined || c.duration === undefined)) ctx.addIssue({ code: "custom", path: [c.rate === undefined ? "rate" : "duration"], message: "a synthetic --workload needs --rate and --duration" });
    if (c.target.length === 0) ctx.addIssue({ code: "custom", path: ["target"], message: "give at least one --target URL" });
    if (c.workers !== undefined && !c.nats) ctx.addIssue({ code: "custom", path: ["nats"], message: "--workers needs --nats" });
    if (c.replicas !== undefined && !c.nats) ctx.addIssue({ code: "custom", path: ["replicas"], message: "--replicas is for the LOAD stream: it needs --nats" });
    // Options of the other kind of source would be silently ignored (a `--duration 60` trace replay ran for hours).
    if (c.trace) for (const [k, v] of [["duration", c.duration], ["ramp-to", c.rampTo], ["cv", c.cv]] as const) if (v !== undefined) ctx.addIssue({ code: "custom", path: [k], message: `--${k} is for synthetic --workload runs; with --trace use --window MS (trace time) or --limit N` });
    if (c.workload) for (const [k, v] of [["speedup", c.speedup], ["from", c.from], ["window", c.window], ["sample", c.sample], ["format", c.format]] as const) if (v !== undefined) ctx.addIssue({ code: "custom", path: [k], message: `--${k} is for --trace replays` });
  });
type Config = z.infer<typeof schema>;

export const loadCommand = defineCommand(
  {
    name: "load",
    summary: "replay a trace or a synthetic workload, open-loop, against OpenAI-compatible endpoints",
    usage: "joulestream load (--trace FILE | --workload CLASS --rate R --duration S) --target URL [options]\n       joulestream load --worker --nats URL",
    options: {
      trace: { type: "string", arg: "FILE", description: "trace to replay (Azure CSV, Mooncake JSONL, BurstGPT CSV)" },
      format: { type: "string", arg: "azure|mooncake|burstgpt", description: "trace format", defaultText: "from the first line (JSON, or the CSV header), else the file name" },
      lenient: { type: "boolean", description: "skip bad trace rows (reported) instead of stopping at the first" },
      workload: { type: "string", arg: "CLASS", description: "synthetic: (short|medium|long)-(short|medium|long), mix, or CLASS:W,CLASS:W" },
      rate: { type: "string", arg: "REQ/S", description: "synthetic: request rate; with --trace: rescale the trace to this mean rate" },
      "ramp-to": { type: "string", arg: "REQ/S", description: "synthetic: ramp the rate linearly from --rate to this" },
      duration: { type: "string", arg: "S", description: "synthetic: seconds of arrivals" },
      arrival: { type: "string", arg: "poisson|gamma|constant", description: "synthetic: arrival process", defaultText: "poisson" },
      cv: { type: "string", arg: "X", description: "synthetic gamma arrivals: coefficient of variation", defaultText: "1" },
      lengths: { type: "string", arg: "uniform|fixed", description: "synthetic: lengths drawn in the class range or fixed at its middle", defaultText: "uniform" },
      seed: { type: "string", arg: "N", description: "seed of synthetic arrivals and of --sample", defaultText: "1" },
      target: { type: "string", multiple: true, arg: "URL", env: "JOULESTREAM_LOAD_TARGETS", description: "server base URL (request i → target i mod n)" },
      api: { type: "string", arg: "completions|chat", description: "OpenAI endpoint", defaultText: "completions" },
      model: { type: "string", description: "model name sent in each request" },
      "prompt-mode": { type: "string", arg: "token-ids|text", description: "prompts as token ids (exact lengths) or calibrated text", defaultText: "token-ids for completions, text for chat" },
      "chars-per-token": { type: "string", arg: "X", description: "text prompts: characters per token of the server's tokenizer", defaultText: "4" },
      speedup: { type: "string", arg: "X", description: "trace: replay X times faster" },
      from: { type: "string", arg: "MS", description: "trace: skip the first MS of the trace" },
      window: { type: "string", arg: "MS", description: "trace: replay only MS of the trace (trace time)" },
      limit: { type: "string", arg: "N", description: "at most N requests" },
      sample: { type: "string", arg: "P", description: "keep each trace row with probability P" },
      "max-prompt-tokens": { type: "string", arg: "N", description: "cap prompt lengths" },
      "max-output-tokens": { type: "string", arg: "N", description: "cap output lengths" },
      concurrency: { type: "string", arg: "N", description: "at most N requests in flight (closed loop: exactly N)" },
      "closed-loop": { type: "boolean", description: "ignore arrival times: keep --concurrency requests in flight" },
      timeout: { type: "string", arg: "S", description: "per-request timeout", defaultText: "600" },
      "slo-ttft-ms": { type: "string", arg: "MS", description: "goodput: TTFT target" },
      "slo-tpot-ms": { type: "string", arg: "MS", description: "goodput: TPOT target" },
      out: { type: "string", arg: "FILE", description: "write one JSON line per request" },
      "run-id": { type: "string", arg: "ID", description: "run id (one subject token)", defaultText: "load-<time>" },
      header: { type: "string", multiple: true, arg: "'K: V'", description: "extra request header" },
      ...natsOptions,
      nats: { ...natsOptions.nats!, description: "NATS URL: publish every result to the LOAD stream (needed by --workers and --worker)", defaultText: "none" },
      ...replicasOptions,
      workers: { type: "string", arg: "N", description: "coordinate N `--worker` processes over NATS instead of sending from here" },
      worker: { type: "boolean", description: "worker mode: take jobs from a coordinator over NATS" },
      "worker-id": { type: "string", arg: "ID", description: "worker mode: this worker's id", defaultText: "hostname-pid" },
      "no-progress": { type: "boolean", description: "no progress bar" },
      "spool-dir": { type: "string", arg: "DIR", env: "JOULESTREAM_LOAD_SPOOL_DIR", description: "where results wait on disk while NATS is unreachable; a run publishes what an earlier one left there", defaultText: `$TMPDIR/${DEFAULT_SPOOL}` },
      "drain-timeout": { type: "string", arg: "S", description: "at the end, how long to wait for NATS to take the results still queued (the rest stays in --spool-dir; exit status 1)", defaultText: "60" },
    },
    schema,
    examples: [
      "joulestream load --trace traces/azure/AzureLLMInferenceTrace_conv.csv --speedup 10 --target http://127.0.0.1:8000 --out results.jsonl",
      "joulestream load --workload long-short --rate 4 --duration 60 --target http://gpu1:8000 --target http://gpu2:8000 --slo-ttft-ms 2000 --slo-tpot-ms 100",
      "joulestream load --worker --nats nats://10.0.0.5:4222   # on each load machine, then:",
      "joulestream load --workers 4 --nats nats://10.0.0.5:4222 --trace conv.csv --target http://gpu1:8000",
    ],
  },
  async (cfg) => {
    const log = (l: string) => process.stderr.write(`load: ${l}\n`);
    const natsCfg = cfg.nats ? { nats: cfg.nats, ...(cfg.creds ? { creds: cfg.creds } : {}), ...(cfg.user ? { user: cfg.user, password: cfg.password } : {}), ...(cfg.token ? { token: cfg.token } : {}) } : undefined;
    if (cfg.worker) return await workerMode(cfg, natsCfg, log);
    const source = await sourceOf(cfg, log);
    let skipped = 0;
    const onSkip = (err: { message: string }) => {
      if (++skipped <= 10) log(`skipped ${err.message}`);
      else if (skipped === 11) log("skipping more bad rows (counted, not shown)");
    };
    const runId = cfg.runId ?? `load-${new Date().toISOString().replace(/[-:T.Z]/g, "").slice(0, 17)}`;
    const headers = Object.fromEntries(cfg.header.map((h) => [h.slice(0, h.indexOf(":")).trim(), h.slice(h.indexOf(":") + 1).trim()]));
    const slo = cfg.sloTtftMs || cfg.sloTpotMs ? { ...(cfg.sloTtftMs ? { ttftMs: cfg.sloTtftMs } : {}), ...(cfg.sloTpotMs ? { tpotMs: cfg.sloTpotMs } : {}) } : undefined;
    let total: number | undefined;
    // A strict replay reads the rows it will send once before it sends any: a bad row late in a long
    // trace stops the run before it starts (and before --out is opened), not hours into it.
    if (source.kind === "trace" && !cfg.lenient) total = await countRequests(source);
    else if (process.stderr.isTTY && !cfg.noProgress) countRequests(source).then((n) => (total = n), () => {});
    const abort = new AbortController();
    // Ctrl-C: stop sending, then wait for the in-flight requests (recorded as aborted), the summary
    // and the --out file before the signal handler exits the process.
    const signals = untilDone(() => abort.abort(), log);
    const file = cfg.out ? openResultsFile(cfg.out) : undefined;
    const progress = createProgress(cfg.noProgress ? ({ isTTY: false } as NodeJS.WriteStream) : process.stderr);
    let sent = 0, completed = 0, errors = 0;
    const count = (r: LoadResult) => {
      completed++;
      if (r.status !== "ok") errors++;
      progress.update({ sent: Math.max(sent, completed), completed, errors, ...(total !== undefined ? { total } : {}) });
    };
    let nc: NatsConnection | undefined;
    let outbox: ResultsOutbox | undefined;
    let notInLoad: number | undefined;
    try {
      // Replies under the role's own inbox prefix: the loadgen-coordinator user may read no other.
      if (natsCfg) nc = await connectNats(natsCfg, `joulestream-load-${runId}`, { inboxPrefix: loadgenInboxPrefix("coordinator") });
      const common = {
        targets: cfg.target,
        api: cfg.api,
        ...(cfg.model ? { model: cfg.model } : {}),
        ...(cfg.promptMode ? { promptMode: cfg.promptMode } : {}),
        ...(cfg.charsPerToken ? { charsPerToken: cfg.charsPerToken } : {}),
        timeoutMs: cfg.timeout * 1000,
        ...(cfg.concurrency ? { concurrency: cfg.concurrency } : {}),
        ...(cfg.closedLoop ? { closedLoop: true } : {}),
        ...(Object.keys(headers).length ? { headers } : {}),
        ...(slo ? { slo } : {}),
      };
      if (cfg.workers !== undefined) {
        log(`run ${runId}: waiting for ${cfg.workers} worker(s) on ${cfg.nats}`);
        let fileError: { err: unknown } | undefined;
        const combined = await runCoordinated({
          nc: nc!,
          workers: cfg.workers,
          job: { runId, source, ...common },
          log,
          signal: abort.signal,
          ...(cfg.replicas !== undefined ? { replicas: cfg.replicas } : {}),
          ...(total !== undefined ? { expected: total } : {}), // counted already (a strict replay): not read again
          onResult: (r) => {
            count(r);
            // A failed write (unwritable --out, full disk) stops the run and is reported, rather
            // than an unhandled rejection that killed the coordinator and left the workers sending.
            file?.write(r).catch((err: unknown) => {
              fileError ??= { err };
              abort.abort();
            });
          },
          onProgress: (p) => (sent = p.sent),
        });
        progress.done();
        if (fileError) throw fileError.err;
        process.stdout.write(formatSummary(combined.summary));
        process.stdout.write(`\nrequests: ${combined.expected} in the workload, ${combined.received} results in LOAD (${combined.duplicates} duplicates dropped), ${combined.missing} missing\n`);
        for (const w of combined.workers) process.stdout.write(`worker ${w.id} (shard ${w.shard}): ${w.status}, ${w.results} results, ${w.received} received${w.held ? `, ${w.held} held in its outbox (published by its next run)` : ""}${w.error ? `, ${w.error}` : ""}\n`);
        return combined.missing > 0 ? 1 : 0;
      }
      if (nc) await assertNewRun(nc, runId, { ...(cfg.replicas !== undefined ? { replicas: cfg.replicas } : {}), log });
      if (nc) outbox = await openOutbox(cfg, nc, log);
      log(`run ${runId}: sending to ${cfg.target.join(", ")}`);
      const summary = await runLoad({
        source: workloadOf(source, { onSkip }),
        runId,
        ...common,
        signal: abort.signal,
        onSent: () => void sent++,
        onResult: async (r) => {
          count(r);
          outbox?.publish(r); // before the file's backpressure wait: LOAD gets results in the order they came
          await file?.write(r);
        },
      });
      progress.done();
      process.stdout.write(formatSummary(summary));
      if (skipped) log(`${skipped} bad trace row(s) skipped (--lenient)`);
      if (summary.requests === 0 && !abort.signal.aborted) log(`the workload has no requests${source.kind === "trace" ? ` (${source.path}: no rows${cfg.from !== undefined || cfg.window !== undefined || cfg.sample !== undefined || cfg.limit !== undefined ? " left after --from/--window/--sample/--limit" : ""})` : ""}`);
      notInLoad = outbox ? await drainAtExit(outbox, cfg.drainTimeout * 1000, log) : 0;
      return abort.signal.aborted ? 130 : summary.ok === 0 ? 3 : notInLoad > 0 ? 1 : 0;
    } finally {
      try {
        progress.done();
        await file?.close();
      } finally {
        // A run that failed keeps on disk what it could not publish, and says so.
        if (outbox && notInLoad === undefined) {
          const { held } = await outbox.close();
          if (held > 0) log(`${held} results are NOT in LOAD: held in ${outbox.dir} for the next run with --spool-dir ${outbox.dir}`);
        }
        // Closed even when --out failed: an open connection kept the process alive after the error.
        await nc?.close();
        signals.done();
      }
    }
  },
);

/**
 * The outbox of this process's results. The default spool dir is shared by the runs on this
 * machine (a run publishes what an earlier one left); one already in use by a live run gives way to
 * `<dir>-<pid>`. A --spool-dir in use is an error.
 */
async function openOutbox(cfg: Config, nc: NatsConnection, log: (l: string) => void): Promise<ResultsOutbox> {
  const outbox = openResultsOutbox(nc, cfg.spoolDir ? { dir: cfg.spoolDir } : { dir: join(tmpdir(), DEFAULT_SPOOL), ifBusy: "own-dir" });
  const left = await outbox.countQueued();
  if (left > 0) log(`publishing first ${left} results an earlier run left in ${outbox.dir}`);
  return outbox;
}

/** The workload of the flags, as data (workers rebuild it from the same spec). */
async function sourceOf(cfg: Config, log: (l: string) => void): Promise<SourceSpec> {
  if (cfg.workload) {
    return {
      kind: "synthetic",
      cls: cfg.workload,
      rate: cfg.rampTo !== undefined ? { from: cfg.rate!, to: cfg.rampTo } : cfg.rate!,
      durationS: cfg.duration!,
      arrival: cfg.arrival,
      lengths: cfg.lengths,
      seed: cfg.seed,
      ...(cfg.cv ? { cv: cfg.cv } : {}),
    };
  }
  // Absolute: workers resolve the path in their own working directory.
  const path = resolve(cfg.trace!);
  let st;
  try {
    st = statSync(path);
  } catch (err) {
    throw new ConfigError("--trace", `cannot read ${cfg.trace}: ${(err as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : errorMessage(err)}`);
  }
  if (!st.isFile()) throw new ConfigError("--trace", `${cfg.trace} is not a file`);
  const format = cfg.format ?? detectFormat(path);
  let speedup = cfg.speedup;
  if (cfg.rate !== undefined) {
    if (speedup !== undefined) throw new ConfigError("--rate", "with --trace, give --rate or --speedup, not both");
    const stats = await traceStats(traceRows(path, format, { lenient: cfg.lenient }));
    if (!(stats.ratePerS > 0)) throw new ConfigError("--rate", `${path} has no time span to rescale`);
    // The rate of what is replayed: --sample keeps that fraction of the rows.
    speedup = cfg.rate / (stats.ratePerS * (cfg.sample ?? 1));
    log(`${path}: ${stats.rows} rows at ${stats.ratePerS.toFixed(3)} req/s; replaying at ${speedup.toFixed(3)}× for ${cfg.rate} req/s`);
  }
  return {
    kind: "trace",
    path,
    format,
    lenient: cfg.lenient,
    seed: cfg.seed,
    ...(speedup !== undefined ? { speedup } : {}),
    ...(cfg.from !== undefined ? { fromMs: cfg.from } : {}),
    ...(cfg.window !== undefined ? { windowMs: cfg.window } : {}),
    ...(cfg.limit !== undefined ? { limit: cfg.limit } : {}),
    ...(cfg.sample !== undefined ? { sample: cfg.sample } : {}),
    ...(cfg.maxPromptTokens !== undefined ? { maxPromptTokens: cfg.maxPromptTokens } : {}),
    ...(cfg.maxOutputTokens !== undefined ? { maxOutputTokens: cfg.maxOutputTokens } : {}),
  };
}

async function workerMode(cfg: Config, natsCfg: { nats: string } | undefined, log: (l: string) => void): Promise<number> {
  if (!natsCfg) throw new ConfigError("--nats", "worker mode needs --nats");
  const id = cfg.workerId ?? `${hostname().replace(/[^A-Za-z0-9_-]/g, "-")}-${process.pid}`;
  const nc = await connectNats(natsCfg, `joulestream-load-worker-${id}`, { inboxPrefix: loadgenInboxPrefix("worker") });
  const outbox = await openOutbox(cfg, nc, log);
  const worker = startWorker({ nc, id, log, outbox, drainTimeoutMs: cfg.drainTimeout * 1000 });
  log(`worker ${id} waiting for jobs on ${cfg.nats}`);
  // A signal stops the worker (its job's results still go to the outbox), then waits for the end
  // below: the outbox drains for --drain-timeout before the process exits.
  const signals = untilDone(() => worker.stop(), log);
  try {
    await worker.closed();
    return (await drainAtExit(outbox, cfg.drainTimeout * 1000, log)) > 0 ? 1 : 0;
  } finally {
    await outbox.close();
    await nc.close();
    signals.done();
  }
}
