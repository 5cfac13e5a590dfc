import { textPrompt, tokenIdPromptJson } from "./prompt.ts";
import type { WorkloadRequest } from "./workload.ts";

/** Which OpenAI endpoint the load speaks. */
export type Api = "completions" | "chat";
/** Token ids need /v1/completions and a server that accepts them (vLLM, SGLang, TGI do). */
export type PromptMode = "token-ids" | "text";

export interface BodyOptions {
  api: Api;
  model?: string;
  promptMode: PromptMode;
  /** Characters per token of the server's tokenizer, for text prompts. */
  charsPerToken: number;
  /** Tokens a chat template adds around one user message (subtracted from the text's length). */
  chatOverheadTokens: number;
}

export const DEFAULT_CHARS_PER_TOKEN = 4;
export const DEFAULT_CHAT_OVERHEAD_TOKENS = 4;

export const API_PATHS: Record<Api, string> = { completions: "/v1/completions", chat: "/v1/chat/completions" };

/**
 * The JSON body of one streamed request. Built as a string: token-id prompts of tens of thousands of
 * ids are concatenated from cached block texts instead of going through JSON.stringify.
 */
export function requestBody(w: WorkloadRequest, o: BodyOptions): string {
  const outputTokens = Math.max(1, w.outputTokens);
  const tail = {
    ...(o.model ? { model: o.model } : {}),
    max_tokens: outputTokens,
    min_tokens: outputTokens,
    ignore_eos: true,
    stream: true,
    stream_options: { include_usage: true },
  };
  const tailJson = JSON.stringify(tail).slice(1); // `"model":…}` without the opening brace
  if (o.api === "chat") {
    const content = textPrompt(w.index, w.promptTokens, { charsPerToken: o.charsPerToken, overheadTokens: o.chatOverheadTokens, ...(w.hashIds ? { hashIds: w.hashIds } : {}) });
    return `{"messages":[{"role":"user","content":${JSON.stringify(content)}}],${tailJson}`;
  }
  const prompt = o.promptMode === "token-ids" ? tokenIdPromptJson(w.index, w.promptTokens, w.hashIds) : JSON.stringify(textPrompt(w.index, w.promptTokens, { charsPerToken: o.charsPerToken, ...(w.hashIds ? { hashIds: w.hashIds } : {}) }));
  return `{"prompt":${prompt},${tailJson}`;
}
