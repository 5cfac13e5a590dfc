/**
 * The paper's nine workload classes (PAPER.md): input × output length, each short / medium / long,
 * cut at the 33rd and 66th percentiles of the 2023 Azure conversation trace. A class is named
 * `<input>-<output>`, e.g. `long-short` (prefill-heavy) or `short-long` (decode-heavy).
 */
export const INPUT_CUTS = [408, 1102] as const;
export const OUTPUT_CUTS = [94, 237] as const;
export const LENGTHS = ["short", "medium", "long"] as const;
export type Length = (typeof LENGTHS)[number];
export type WorkloadClass = `${Length}-${Length}`;
export const CLASSES: readonly WorkloadClass[] = LENGTHS.flatMap((i) => LENGTHS.map((o) => `${i}-${o}` as WorkloadClass));

/**
 * Token ranges [lo, hi] a synthetic request of each length draws from. Short and medium end at the
 * cut points; the long ranges' upper ends (4096 in, 1024 out) are our choice: the trace's long tail
 * goes further, but a class must be replayable on a 4K-context model.
 */
export const INPUT_RANGES: Record<Length, readonly [number, number]> = { short: [32, INPUT_CUTS[0] - 1], medium: [INPUT_CUTS[0], INPUT_CUTS[1] - 1], long: [INPUT_CUTS[1], 4096] };
export const OUTPUT_RANGES: Record<Length, readonly [number, number]> = { short: [8, OUTPUT_CUTS[0] - 1], medium: [OUTPUT_CUTS[0], OUTPUT_CUTS[1] - 1], long: [OUTPUT_CUTS[1], 1024] };

function lengthOf(tokens: number, cuts: readonly [number, number]): Length {
  return tokens < cuts[0] ? "short" : tokens < cuts[1] ? "medium" : "long";
}

/** The class of a request with these lengths. */
export function classify(promptTokens: number, outputTokens: number): WorkloadClass {
  return `${lengthOf(promptTokens, INPUT_CUTS)}-${lengthOf(outputTokens, OUTPUT_CUTS)}`;
}

/** Parses `short-long`, or a single length `medium` meaning `medium-medium`; undefined if invalid. */
export function parseClass(name: string): WorkloadClass | undefined {
  const parts = name.trim().toLowerCase().split("-");
  const [i, o = parts[0]] = parts;
  if (parts.length > 2 || !LENGTHS.includes(i as Length) || !LENGTHS.includes(o as Length)) return undefined;
  return `${i as Length}-${o as Length}`;
}
