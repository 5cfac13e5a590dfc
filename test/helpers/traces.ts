import { fileURLToPath } from "node:url";

/**
 * The public traces beside the checkout (`../shared/traces`), read in place and never copied into
 * the repo. JOULESTREAM_TRACES points elsewhere (e.g. other traces of the same formats).
 */
export const TRACES_DIR = process.env.JOULESTREAM_TRACES ?? fileURLToPath(new URL("../../../shared/traces", import.meta.url));
