/**
 * A small typed builder for Grafana dashboard provisioning JSON (schemaVersion 39, Grafana 10/11)
 * over an InfluxDB datasource in InfluxQL mode. Every query is raw InfluxQL so that it can be run,
 * as written, against a real InfluxDB in the tests (after Grafana's variable substitution).
 */
export const DATASOURCE_UID = "joulestream-influxdb";
export const DATASOURCE = { type: "influxdb", uid: DATASOURCE_UID } as const;

export type PanelType = "timeseries" | "stat" | "table" | "bargauge" | "barchart";

export interface Query {
  query: string;
  alias?: string;
  format?: "time_series" | "table";
}

export interface PanelOptions {
  title: string;
  type?: PanelType;
  description?: string;
  unit?: string;
  queries: Query[];
  /** Grid width (of 24) and height; placed left to right, wrapping. */
  w?: number;
  h?: number;
  decimals?: number;
  stack?: boolean;
  transformations?: unknown[];
}

export interface Variable {
  name: string;
  label: string;
  /** InfluxQL `SHOW TAG VALUES …`, or a textbox with a default. */
  query?: string;
  textbox?: string;
}

export interface DashboardOptions {
  uid: string;
  title: string;
  description: string;
  tags?: string[];
  variables?: Variable[];
  panels: PanelOptions[];
  refresh?: string;
  from?: string;
}

export interface Dashboard {
  uid: string;
  title: string;
  panels: { title: string; type: string; targets: { refId: string; query: string; rawQuery: true; resultFormat: string; alias?: string }[] }[];
  [k: string]: unknown;
}

const REF = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

export function dashboard(o: DashboardOptions): Dashboard {
  let x = 0, y = 0, rowH = 0;
  const panels = o.panels.map((p, i) => {
    const w = p.w ?? 12, h = p.h ?? 8;
    if (x + w > 24) {
      x = 0;
      y += rowH;
      rowH = 0;
    }
    const gridPos = { x, y, w, h };
    x += w;
    rowH = Math.max(rowH, h);
    const type = p.type ?? "timeseries";
    return {
      id: i + 1,
      type,
      title: p.title,
      ...(p.description ? { description: p.description } : {}),
      datasource: DATASOURCE,
      gridPos,
      targets: p.queries.map((q, k) => ({
        refId: REF[k]!,
        datasource: DATASOURCE,
        rawQuery: true as const,
        query: q.query,
        resultFormat: q.format ?? (type === "table" ? "table" : "time_series"),
        ...(q.alias ? { alias: q.alias } : {}),
      })),
      fieldConfig: {
        defaults: {
          ...(p.unit ? { unit: p.unit } : {}),
          ...(p.decimals !== undefined ? { decimals: p.decimals } : {}),
          ...(type === "timeseries" ? { custom: { drawStyle: "line", lineWidth: 1, fillOpacity: p.stack ? 30 : 0, showPoints: "never", spanNulls: true, stacking: { mode: p.stack ? "normal" : "none", group: "A" } } } : {}),
        },
        overrides: [],
      },
      options: type === "stat" ? { reduceOptions: { calcs: ["lastNotNull"], fields: "", values: false }, colorMode: "value", graphMode: "area", textMode: "auto" } : type === "timeseries" ? { legend: { displayMode: "table", placement: "bottom", calcs: ["mean", "lastNotNull"] }, tooltip: { mode: "multi", sort: "desc" } } : type === "bargauge" ? { reduceOptions: { calcs: ["lastNotNull"], fields: "", values: false }, orientation: "horizontal", displayMode: "gradient" } : {},
      ...(p.transformations ? { transformations: p.transformations } : {}),
    };
  });
  return {
    uid: o.uid,
    title: o.title,
    description: o.description,
    tags: ["joulestream", ...(o.tags ?? [])],
    editable: true,
    schemaVersion: 39,
    version: 1,
    time: { from: o.from ?? "now-1h", to: "now" },
    refresh: o.refresh ?? "10s",
    timezone: "browser",
    graphTooltip: 1,
    templating: {
      list: (o.variables ?? []).map((v) =>
        v.textbox !== undefined
          ? { name: v.name, label: v.label, type: "textbox", query: v.textbox, current: { text: v.textbox, value: v.textbox }, hide: 0 }
          : { name: v.name, label: v.label, type: "query", datasource: DATASOURCE, query: v.query, refresh: 2, includeAll: true, multi: true, allValue: ".*", current: { text: "All", value: "$__all" }, sort: 1, hide: 0 },
      ),
    },
    annotations: { list: [] },
    panels,
  };
}

/** Measurements an InfluxQL query reads (`FROM "x"`, also inside subqueries). */
export function measurementsOf(query: string): string[] {
  return [...new Set([...query.matchAll(/FROM\s+(?:"[A-Za-z0-9_]+"\.)?"([A-Za-z0-9_]+)"/gi)].map((m) => m[1]!))]; // "rp"."measurement" too
}
