import { fileURLToPath } from "node:url";

/**
 * The public traces the repository carries (load/traces: Azure 2023 whole, Mooncake excerpts; see
 * its README for sources and licences). JOULESTREAM_TRACES points elsewhere, e.g. at the full
 * traces `joulestream traces fetch` downloads, laid out the same way (azure/, mooncake/).
 */
export const TRACES_DIR = process.env.JOULESTREAM_TRACES ?? fileURLToPath(new URL("../../load/traces", import.meta.url));
