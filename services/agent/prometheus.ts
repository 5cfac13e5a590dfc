/** A minimal Prometheus text-format (0.0.4) parser: enough for DCGM exporter's /metrics. */
export interface PromSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

// The label block ends at the first `}` outside a quoted value; an OpenMetrics exemplar (` # {…} v`) after the value is ignored.
const LINE_RE = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{((?:[^"}]|"(?:[^"\\]|\\.)*")*)\})?\s+(\S+)(?:\s+(?!#)\S+)?\s*(?:#[^]*)?$/;
const LABEL_RE = /([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parsePrometheusText(text: string): PromSample[] {
  const out: PromSample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = LINE_RE.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    if (m[2]) {
      for (const lm of m[2].matchAll(LABEL_RE)) labels[lm[1]!] = lm[2]!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    }
    const value = Number(m[3]);
    if (Number.isNaN(value) && m[3] !== "NaN") continue;
    out.push({ name: m[1]!, labels, value });
  }
  return out;
}
