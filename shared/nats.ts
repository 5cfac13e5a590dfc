import { readFileSync } from "node:fs";
import { z } from "zod";
import { connect } from "@nats-io/transport-node";
import { credsAuthenticator, type NatsConnection } from "@nats-io/nats-core";
import { ConfigError, RetryableError, errorMessage } from "./errors.ts";

export const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";

export const natsConfig = z.object({
  nats: z.string().default(DEFAULT_NATS_URL),
  creds: z.string().optional(),
  user: z.string().optional(),
  password: z.string().optional(),
  token: z.string().optional(),
});
export type NatsConfig = z.infer<typeof natsConfig>;

/**
 * Connects with the given credentials. Reconnects forever by default: services ride out broker
 * restarts (the agent buffers meanwhile); a first connection that fails is retryable for the caller.
 */
export async function connectNats(cfg: NatsConfig, name: string, opts: { maxReconnectAttempts?: number; inboxPrefix?: string } = {}): Promise<NatsConnection> {
  let authenticator;
  if (cfg.creds) {
    let bytes: Uint8Array;
    try {
      bytes = readFileSync(cfg.creds);
    } catch (err) {
      throw new ConfigError("--creds", `cannot read ${cfg.creds}: ${errorMessage(err)}`);
    }
    authenticator = credsAuthenticator(bytes);
  }
  try {
    return await connect({
      servers: cfg.nats.split(",").map((s) => s.trim()),
      name,
      ...(authenticator ? { authenticator } : {}),
      ...(cfg.user ? { user: cfg.user, pass: cfg.password } : {}),
      ...(cfg.token ? { token: cfg.token } : {}),
      maxReconnectAttempts: opts.maxReconnectAttempts ?? -1,
      ...(opts.inboxPrefix ? { inboxPrefix: opts.inboxPrefix } : {}),
      reconnectTimeWait: 250,
      pingInterval: 10_000,
      // Async stack traces cost two Error objects per request (every JetStream publish and KV call):
      // 12% of the analyzer's CPU when profiled. JOULESTREAM_DEBUG=1 keeps them.
      noAsyncTraces: process.env.JOULESTREAM_DEBUG !== "1",
    });
  } catch (err) {
    throw new RetryableError("UNAVAILABLE", `cannot connect to NATS at ${cfg.nats}: ${errorMessage(err)}`, err);
  }
}

/**
 * An error reply of a NATS service (`@nats-io/services`): the message goes in the
 * Nats-Service-Error header, which may hold no CR/LF (a ZodError's message is multi-line JSON,
 * InfluxDB's error bodies end in a newline; respondError throws on them, and the caller got that
 * throw's text instead), so it is put on one line; the body carries it too.
 */
export function respondServiceError(m: { respondError(code: number, description: string, data?: string): boolean }, code: number, message: string): void {
  const line = message.replace(/[\r\n]+/g, " ").trim().slice(0, 500);
  m.respondError(code, line, JSON.stringify({ error: line }));
}
