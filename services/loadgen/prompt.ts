import { createRng } from "../../shared/rng.ts";

/**
 * Prompts of an exact length. Token-id prompts are built from 512-token blocks, as the Mooncake trace
 * describes them: one block per hash id, the same hash id always giving the identical block and two
 * different ids always giving different blocks (ids are written into the block's first tokens, an
 * injective encoding), so a server's prefix cache sees exactly the sharing the trace recorded.
 * Requests without hash ids get blocks from a namespace of their own, so nothing is shared by chance.
 */
export const BLOCK_TOKENS = 512;
/** Token ids are drawn from [TOKEN_LO, TOKEN_HI): ordinary ids in every common vocabulary (Llama-2 has 32000). */
export const TOKEN_LO = 1000;
export const TOKEN_HI = 29_000;
const BASE = TOKEN_HI - TOKEN_LO;
/** Tokens at the head of a block that encode its id (BASE^4 > 2^53, so every safe integer fits). */
const HEAD = 4;
/** Bodies are shared by many blocks; the head makes each block distinct. */
const BODIES = 64;
/** Namespace of unshared blocks: far above the hash ids of any trace. */
const UNIQUE_BASE = 2 ** 40;
const MAX_UNIQUE_BLOCKS_PER_REQUEST = 4096;

const bodyCache: string[] = [];
function body(i: number): string {
  let b = bodyCache[i];
  if (b === undefined) {
    const rng = createRng(0x5eed + i);
    const ids: number[] = [];
    for (let t = 0; t < BLOCK_TOKENS - HEAD; t++) ids.push(TOKEN_LO + Math.floor(rng.next() * BASE));
    b = ids.join(",");
    bodyCache[i] = b;
  }
  return b;
}

function headIds(id: number): number[] {
  const out: number[] = [];
  let rest = id;
  for (let i = 0; i < HEAD; i++) {
    out.push(TOKEN_LO + (rest % BASE));
    rest = Math.floor(rest / BASE);
  }
  return out;
}

/** The comma-separated token ids of the first `tokens` tokens of block `id` (1 ≤ tokens ≤ 512). */
export function blockIdsText(id: number, tokens = BLOCK_TOKENS): string {
  const head = headIds(id);
  if (tokens <= HEAD) return head.slice(0, tokens).join(",");
  const b = body(id % BODIES);
  if (tokens === BLOCK_TOKENS) return head.join(",") + "," + b;
  // Cut the body after (tokens - HEAD) ids.
  let pos = -1;
  for (let i = 0; i < tokens - HEAD; i++) pos = b.indexOf(",", pos + 1);
  return head.join(",") + "," + (pos < 0 ? b : b.slice(0, pos));
}

/** The block ids of a request's prompt: its hash ids, then unshared blocks for what they do not cover. */
export function promptBlocks(index: number, promptTokens: number, hashIds?: readonly number[]): number[] {
  const n = Math.ceil(promptTokens / BLOCK_TOKENS);
  const ids = (hashIds ?? []).slice(0, n);
  for (let b = ids.length; b < n; b++) ids.push(UNIQUE_BASE + index * MAX_UNIQUE_BLOCKS_PER_REQUEST + b);
  return ids;
}

/** JSON text of a token-id array of exactly `promptTokens` ids (the value of `prompt`). */
export function tokenIdPromptJson(index: number, promptTokens: number, hashIds?: readonly number[]): string {
  if (promptTokens <= 0) return "[]";
  const blocks = promptBlocks(index, promptTokens, hashIds);
  const parts: string[] = [];
  for (let b = 0; b < blocks.length; b++) {
    const tokens = b === blocks.length - 1 ? promptTokens - b * BLOCK_TOKENS : BLOCK_TOKENS;
    parts.push(blockIdsText(blocks[b]!, tokens));
  }
  return "[" + parts.join(",") + "]";
}

/** Token ids of a prompt as numbers (tests, small prompts). */
export function tokenIdPrompt(index: number, promptTokens: number, hashIds?: readonly number[]): number[] {
  return JSON.parse(tokenIdPromptJson(index, promptTokens, hashIds)) as number[];
}

const WORDS = ["energy", "power", "token", "joule", "watt", "clock", "batch", "model", "kernel", "tensor", "prefill", "decode", "memory", "cache", "fleet", "node"];

/**
 * A text prompt meant to tokenize to `promptTokens` tokens at `charsPerToken` characters per token
 * (calibrate it with `calibrateCharsPerToken`). Blocks follow the same sharing rule as token ids; a
 * block's text starts with its id so different blocks never coincide. Chat templates add tokens of
 * their own: pass them as `overheadTokens` so the total asked for matches the trace.
 */
export function textPrompt(index: number, promptTokens: number, opts: { charsPerToken: number; overheadTokens?: number; hashIds?: readonly number[] }): string {
  const tokens = Math.max(1, promptTokens - (opts.overheadTokens ?? 0));
  const chars = Math.max(1, Math.round(tokens * opts.charsPerToken));
  const blocks = promptBlocks(index, tokens, opts.hashIds);
  const blockChars = Math.round(BLOCK_TOKENS * opts.charsPerToken);
  let out = "";
  for (const id of blocks) {
    let s = `[${id}]`;
    let w = id % WORDS.length;
    while (s.length < blockChars) s += " " + WORDS[w++ % WORDS.length];
    out += s.slice(0, blockChars);
    if (out.length >= chars) break;
  }
  return out.slice(0, chars);
}
