import { RetryableError, PermanentError, errorMessage } from "./errors.ts";

/**
 * InfluxQL over HTTP `/query` — the query language our dashboards use, served by InfluxDB 1.x,
 * 2.x (through DBRP mappings) and 3.x alike. Returns each series as rows of column → value.
 */
export interface InfluxTarget {
  url: string;
  database: string;
  /** 2.x/3.x token, sent as `Authorization: Token …`. */
  token?: string;
  username?: string;
  password?: string;
}

export interface Series {
  name: string;
  tags: Record<string, string>;
  rows: Record<string, unknown>[];
}

/** A string literal of InfluxQL: quoted, its backslashes and quotes escaped. */
export function influxString(s: string): string {
  return `'${s.replace(/\\/g, "\\\\").replace(/'/g, "\\'")}'`;
}

export async function influxQuery(target: InfluxTarget, q: string, opts: { timeoutMs?: number; epoch?: "ms" | "ns" } = {}): Promise<Series[]> {
  const url = new URL("/query", target.url);
  url.searchParams.set("db", target.database);
  url.searchParams.set("q", q);
  url.searchParams.set("epoch", opts.epoch ?? "ms");
  const headers: Record<string, string> = {};
  if (target.token) headers.authorization = `Token ${target.token}`;
  if (target.username) headers.authorization = `Basic ${Buffer.from(`${target.username}:${target.password ?? ""}`).toString("base64")}`;
  let res: Response;
  try {
    res = await fetch(url, { method: "POST", headers, signal: AbortSignal.timeout(opts.timeoutMs ?? 30_000) });
  } catch (err) {
    throw new RetryableError("UNAVAILABLE", `InfluxDB at ${target.url} unreachable: ${errorMessage(err)}`, err);
  }
  const text = await res.text();
  if (!res.ok) {
    const E = res.status >= 500 ? RetryableError : PermanentError;
    throw new E(res.status >= 500 ? "UNAVAILABLE" : "SCHEMA", `InfluxQL query failed (HTTP ${res.status}): ${text.slice(0, 300)}`);
  }
  const body = JSON.parse(text) as { results?: { error?: string; series?: { name: string; tags?: Record<string, string>; columns: string[]; values: unknown[][] }[] }[] };
  const out: Series[] = [];
  for (const r of body.results ?? []) {
    if (r.error) throw new PermanentError("SCHEMA", `InfluxQL error: ${r.error} (query: ${q})`);
    for (const s of r.series ?? []) {
      out.push({ name: s.name, tags: s.tags ?? {}, rows: s.values.map((v) => Object.fromEntries(s.columns.map((c, i) => [c, v[i]]))) });
    }
  }
  return out;
}
