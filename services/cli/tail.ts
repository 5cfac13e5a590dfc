import { z } from "zod";
import { DeliverPolicy, jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { ConfigError, connectNats, decode, natsConfig, natsOptions, requestBatch, STREAM_SUBJECTS, type StreamName } from "../../shared/mod.ts";
import { defineCommand } from "../../shared/command.ts";
import { exitWhenReaderGoes } from "./reader-gone.ts";
import { errorMessage } from "../../shared/errors.ts";

/**
 * `joulestream tail SUBJECT`: what an operator uses to see what is flowing. Reads the subject's
 * stream with an ephemeral ordered consumer (from now, or from the start with --all) and prints each
 * message decoded as one JSON line. Bytes become base64; undecodable messages are printed as such.
 * With --events, a REQUESTS batch is printed as one line per event (with the batch's msgId), and
 * --count counts those lines: what the operator sees, not how the agent happened to batch it.
 */
const schema = natsConfig.extend({
  count: z.coerce.number().int().positive().optional(),
  all: z.boolean().default(false),
  timeout: z.coerce.number().positive().optional(),
  events: z.boolean().default(false),
});

export const tailCommand = defineCommand(
  {
    name: "tail",
    summary: "print the decoded messages of a subject as JSON lines",
    usage: "joulestream tail SUBJECT [--nats URL] [--count N] [--all] [--events]",
    positionals: "SUBJECT",
    options: {
      ...natsOptions,
      count: { type: "string", arg: "N", description: "exit after N messages (with --events: after N events, a batch's counted one by one)" },
      all: { type: "boolean", description: "start from the first stored message instead of new ones" },
      timeout: { type: "string", arg: "SECONDS", description: "exit after this long without a message" },
      events: { type: "boolean", description: "print a request_batch (REQUESTS) as one line per event" },
    },
    schema,
    examples: ["joulestream tail 'power.v1.>' --count 1", "joulestream tail 'req.v1.node-1' --events", "joulestream tail 'energy.v1.node-1' --all", "joulestream tail 'dlq.v1.>' --all --timeout 2"],
  },
  async (cfg, positionals) => {
    const subject = positionals[0];
    if (!subject) throw new ConfigError("SUBJECT", "missing: which subject to tail (e.g. 'power.v1.>')");
    const stream = streamOf(subject);
    exitWhenReaderGoes();
    const nc = await connectNats(cfg, "joulestream-tail", { maxReconnectAttempts: 5 });
    try {
      const jsm = await jetstreamManager(nc); // fails clearly if JetStream is off
      const js = jetstream(nc);
      const consumer = await js.consumers
        .get(stream, {
          filter_subjects: await filterFor(jsm, nc.info?.version, stream, subject), // a string → filter_subject: works on server 2.9
          deliver_policy: cfg.all ? DeliverPolicy.All : DeliverPolicy.New,
        })
        .catch((err: Error) => {
          // The server's refusals are the operator's input, not a crash: one line, no stack trace.
          if (err.name === "StreamNotFoundError") throw new ConfigError("SUBJECT", `stream ${stream} (${STREAM_SUBJECTS[stream]}) does not exist on this server yet: the analyzer creates it`);
          if (err.name === "JetStreamApiError" || err.name === "InvalidSubjectError") throw new ConfigError("SUBJECT", `${JSON.stringify(subject)} cannot be read from stream ${stream} (${STREAM_SUBJECTS[stream]}): ${err.message}`);
          throw err;
        });
      let seen = 0;
      for (;;) {
        const m = await consumer.next({ expires: Math.max(1000, (cfg.timeout ?? 3600) * 1000) });
        if (!m) {
          if (cfg.timeout) break;
          continue;
        }
        let value: unknown;
        try {
          value = decode(m.data);
        } catch (err) {
          value = { undecodable: Buffer.from(m.data).toString("base64"), error: errorMessage(err) };
        }
        const batch = cfg.events ? requestBatch.safeParse(value) : undefined;
        const lines = batch?.success ? batch.data.events.map((e) => ({ subject: m.subject, seq: m.seq, batch: batch.data.msgId, data: e })) : [{ subject: m.subject, seq: m.seq, data: value }];
        // --count N: N lines, even when the Nth is in the middle of a batch.
        const take = cfg.count ? Math.min(lines.length, cfg.count - seen) : lines.length;
        for (let i = 0; i < take; i++) process.stdout.write(JSON.stringify(lines[i], jsonReplacer) + "\n");
        seen += take;
        if (cfg.count && seen >= cfg.count) break;
      }
      return 0;
    } finally {
      await nc.close();
    }
  },
);

function jsonReplacer(_k: string, v: unknown): unknown {
  if (v instanceof Uint8Array) return { base64: Buffer.from(v).toString("base64") };
  if (typeof v === "bigint") return v.toString();
  return v;
}

/**
 * The consumer filter for SUBJECT. With the analyzer's partition mappings (partitionMappings()),
 * `power|work|req.v1.<node>` is stored as `….<node>.<partition>`: a node's own subject then matches
 * nothing, so it is read as `<subject>.*` too (both on 2.10+, which takes several filters; on 2.9,
 * whichever the stream holds).
 */
async function filterFor(jsm: JetStreamManager, version: string | undefined, stream: StreamName, subject: string): Promise<string | string[]> {
  if (!/^(power|work|req)\.v1\.[^.*>\s]+$/.test(subject)) return subject;
  const [major = 0, minor = 0] = (version ?? "").split(".").map(Number);
  if (major > 2 || (major === 2 && minor >= 10)) return [subject, `${subject}.*`];
  const info = await jsm.streams.info(stream, { subjects_filter: `${subject}.*` }).catch(() => undefined);
  return info?.state.subjects && Object.keys(info.state.subjects).length > 0 ? `${subject}.*` : subject;
}

/** The stream that holds a subject (by its first token). */
export function streamOf(subject: string): StreamName {
  const head = subject.split(".")[0];
  for (const [name, pattern] of Object.entries(STREAM_SUBJECTS)) if (pattern.split(".")[0] === head) return name as StreamName;
  throw new ConfigError("SUBJECT", `${JSON.stringify(subject)} is in no joulestream stream (subjects start with ${Object.values(STREAM_SUBJECTS).map((s) => s.split(".")[0]).join(", ")})`);
}
