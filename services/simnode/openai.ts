import { z } from "zod";

/**
 * The slice of the OpenAI (and vLLM) request schema the simulated node honours, and the response
 * shapes it writes. Validated once here; the server trusts the parsed values.
 */

/**
 * Text prompts are not tokenized: the simulated node counts ceil(chars / CHARS_PER_TOKEN) tokens,
 * the usual ≈4 characters per token of English text with Llama/GPT tokenizers. Exported so a load
 * generator can turn a wanted prompt length in tokens into text of the right size.
 */
export const CHARS_PER_TOKEN = 4;
/** Tokens a chat template adds per message (role header, separators), as Llama-2/3 templates do (≈4). */
export const CHAT_TOKENS_PER_MESSAGE = 4;

export const estimateTextTokens = (text: string): number => Math.max(1, Math.ceil(text.length / CHARS_PER_TOKEN));

/** Text of `tokens` prompt tokens under the estimate above (what a load generator should send). */
export const textOfTokens = (tokens: number): string => "lorem ".repeat(Math.ceil((tokens * CHARS_PER_TOKEN) / 6)).slice(0, tokens * CHARS_PER_TOKEN);

// Both nullable, as in vLLM's StreamOptions (`bool | None`): an explicit null means "no".
const streamOptions = z.object({ include_usage: z.boolean().nullish(), continuous_usage_stats: z.boolean().nullish() }).passthrough();

const common = {
  model: z.string().optional(),
  max_tokens: z.number().int().min(1).optional(),
  max_completion_tokens: z.number().int().min(1).optional(),
  min_tokens: z.number().int().min(0).optional(),
  ignore_eos: z.boolean().optional(),
  stream: z.boolean().optional(),
  stream_options: streamOptions.nullish(),
  n: z.literal(1).optional(),
};

export const completionRequest = z.object({
  ...common,
  prompt: z.union([z.string(), z.array(z.number().int().min(0)).min(1), z.tuple([z.string()]), z.tuple([z.array(z.number().int().min(0)).min(1)])]),
}).passthrough();

const content = z.union([z.string(), z.array(z.object({ type: z.string(), text: z.string().optional() }).passthrough())]).nullish();
export const chatRequest = z.object({
  ...common,
  messages: z.array(z.object({ role: z.string(), content }).passthrough()).min(1),
}).passthrough();

export type CompletionRequest = z.infer<typeof completionRequest>;
export type ChatRequest = z.infer<typeof chatRequest>;

/** What the engine needs from either endpoint. */
export interface ParsedRequest {
  kind: "completion" | "chat";
  model: string | undefined;
  promptTokens: number;
  maxTokens: number | undefined;
  minTokens: number;
  ignoreEos: boolean;
  stream: boolean;
  /** A final usage-only chunk (`"choices": []`) before [DONE]. */
  includeUsage: boolean;
  /** Usage in every chunk too; never without includeUsage. */
  continuousUsage: boolean;
}

/**
 * What a stream reports of its usage, as vLLM decides it (`should_include_usage()` in its serving
 * utils, over its `StreamOptions` model): no `stream_options` (or null) → no usage; an object →
 * `include_usage` defaults to true when the key is absent (vLLM's model default, unlike OpenAI's
 * API) and null or false means no; per-chunk usage (`continuous_usage_stats`) only with
 * include_usage. vLLM's `--enable-force-include-usage` is not modelled.
 */
export function streamUsage(so: { include_usage?: boolean | null; continuous_usage_stats?: boolean | null } | null | undefined): { includeUsage: boolean; continuousUsage: boolean } {
  if (so === null || so === undefined) return { includeUsage: false, continuousUsage: false };
  const includeUsage = so.include_usage === undefined || so.include_usage === true;
  return { includeUsage, continuousUsage: includeUsage && so.continuous_usage_stats === true };
}

export function promptTokensOfCompletion(r: CompletionRequest): number {
  const p = Array.isArray(r.prompt) && r.prompt.length === 1 && (typeof r.prompt[0] === "string" || Array.isArray(r.prompt[0])) ? r.prompt[0] : r.prompt;
  return typeof p === "string" ? estimateTextTokens(p) : (p as number[]).length;
}

export function promptTokensOfChat(r: ChatRequest): number {
  let chars = 0;
  for (const m of r.messages) {
    if (typeof m.content === "string") chars += m.content.length;
    else if (Array.isArray(m.content)) for (const part of m.content) chars += part.text?.length ?? 0;
  }
  return Math.max(1, Math.ceil(chars / CHARS_PER_TOKEN)) + CHAT_TOKENS_PER_MESSAGE * r.messages.length;
}

/** Python's truth of a JSON value, which vLLM's request validators test with `data.get(…)`. */
const pyTruthy = (x: unknown): boolean =>
  !(x === undefined || x === null || x === false || x === 0 || x === "" || (Array.isArray(x) ? x.length === 0 : typeof x === "object" && Object.keys(x).length === 0));

export function parseOpenAi(kind: "completion" | "chat", body: unknown): { ok: true; req: ParsedRequest } | { ok: false; message: string; type?: string; param?: string } {
  // vLLM's validate_stream_options, a "before" validator: it runs ahead of the fields' own checks.
  const raw = typeof body === "object" && body !== null ? (body as Record<string, unknown>) : {};
  if (pyTruthy(raw.stream_options) && !pyTruthy(raw.stream)) return { ok: false, message: "Stream options can only be defined when `stream=True`.", type: "BadRequestError", param: "stream_options" };
  const res = kind === "completion" ? completionRequest.safeParse(body) : chatRequest.safeParse(body);
  if (!res.success) {
    const issue = res.error.issues[0]!;
    return { ok: false, message: `${issue.path.join(".") || "body"}: ${issue.message}` };
  }
  const r = res.data;
  const promptTokens = kind === "completion" ? promptTokensOfCompletion(r as CompletionRequest) : promptTokensOfChat(r as ChatRequest);
  return {
    ok: true,
    req: {
      kind,
      model: r.model,
      promptTokens,
      maxTokens: r.max_tokens ?? r.max_completion_tokens,
      minTokens: r.min_tokens ?? 0,
      ignoreEos: r.ignore_eos ?? false,
      stream: r.stream ?? false,
      ...streamUsage(r.stream_options),
    },
  };
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export const usageOf = (prompt: number, completion: number): Usage => ({ prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion });

const WORDS = [" the", " energy", " of", " a", " token", " is", " measured", " in", " joules", ",", " and", " GPU", " power", " per", " request", "."];
/** Deterministic text of output token `i` (never empty, so every chunk carries content). */
export const tokenText = (i: number): string => WORDS[i % WORDS.length]!;

/** vLLM's error body (`ErrorResponse` → `ErrorInfo`): `param` names the request field at fault, or null. */
export function openAiError(message: string, type = "invalid_request_error", code = 400, param: string | null = null): { error: { message: string; type: string; param: string | null; code: number } } {
  return { error: { message, type, param, code } };
}

/**
 * vLLM's answer to a model it does not serve (`OpenAIServing._check_model`): 404, type NotFoundError,
 * param "model". A request without a model is served by the default one, as in vLLM.
 */
export const modelNotFound = (model: string) => openAiError(`The model \`${model}\` does not exist.`, "NotFoundError", 404, "model");
