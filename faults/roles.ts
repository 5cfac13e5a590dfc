import type { JetStreamManager } from "@nats-io/jetstream";
import type { FaultServer } from "./cluster.ts";

/**
 * Which server plays which part right now, so a scenario kills the one that matters: the leader of
 * a stream (or of a KV bucket, whose stream is KV_<bucket>), or the server a named client is
 * connected to. Asked of the cluster itself (stream info, each server's /connz), never assumed.
 */

/** server_name of the leader of `stream` (KV buckets: `KV_<bucket>`). */
export async function streamLeader(jsm: JetStreamManager, stream: string): Promise<string> {
  const leader = (await jsm.streams.info(stream)).cluster?.leader;
  if (!leader) throw new Error(`${stream} has no leader`);
  return leader;
}

/**
 * The server leading most of `streams` (ties: the first stream's leader), with what it leads:
 * "the server holding the analyzer's buckets".
 */
export async function mostLeader(jsm: JetStreamManager, streams: readonly string[]): Promise<{ server: string; leads: string[] }> {
  const by = new Map<string, string[]>();
  for (const s of streams) {
    const l = await streamLeader(jsm, s);
    by.set(l, [...(by.get(l) ?? []), s]);
  }
  const first = await streamLeader(jsm, streams[0]!);
  let best = first;
  for (const [server, leads] of by) if (leads.length > by.get(best)!.length) best = server;
  return { server: best, leads: by.get(best)! };
}

/** The server (by its /connz) that holds a client connection named `clientName`, if any does. */
export async function serverOfClient(servers: readonly FaultServer[], clientName: string): Promise<string | undefined> {
  for (const s of servers) {
    if (!s.running()) continue;
    const res = await fetch(`${s.monitorUrl}/connz?limit=1024`, { signal: AbortSignal.timeout(2_000) });
    const connz = (await res.json()) as { connections?: { name?: string }[] };
    if (connz.connections?.some((c) => c.name === clientName)) return s.name;
  }
  return undefined;
}
