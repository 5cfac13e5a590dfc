import { errorMessage, RetryableError } from "../../shared/mod.ts";

/**
 * Which write API an InfluxDB speaks: `/ping` reports the version (X-Influxdb-Version); 1.8 and
 * later (2.x, 3.x) accept `/api/v2/write`, older 1.x only `/write`.
 */
export async function detectInfluxApi(url: string, timeoutMs = 5000): Promise<{ api: "v1" | "v2"; version: string }> {
  let res: Response;
  try {
    res = await fetch(new URL("/ping", url), { signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    throw new RetryableError("UNAVAILABLE", `InfluxDB at ${url} unreachable: ${errorMessage(err)}`, err);
  }
  const version = res.headers.get("x-influxdb-version") ?? "unknown";
  const m = /^v?(\d+)\.(\d+)/.exec(version);
  const old = m !== null && Number(m[1]) === 1 && Number(m[2]) < 8;
  return { api: old ? "v1" : "v2", version };
}
