/**
 * Follows an OpenAI-style SSE stream as it passes through the tap, without changing it: counts
 * output tokens (from `usage` when the server reports it per chunk, else one per content chunk)
 * and picks up the final `usage`.
 */
export interface SseProgress {
  /** Output tokens newly seen in this chunk of bytes. */
  newTokens: number;
  /** Prompt tokens if a usage object said so. */
  promptTokens?: number;
}

export interface SseCounter {
  push(chunk: Buffer): SseProgress;
  readonly outputTokens: number;
  readonly promptTokens: number | undefined;
  readonly usageCompletionTokens: number | undefined;
  readonly done: boolean;
}

export function createSseCounter(): SseCounter {
  let buf = "";
  let outputTokens = 0;
  let promptTokens: number | undefined;
  let usageCompletion: number | undefined;
  let done = false;
  return {
    push(chunk) {
      buf += chunk.toString("utf8");
      let newTokens = 0;
      let seenPrompt: number | undefined;
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trimEnd();
        buf = buf.slice(nl + 1);
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") {
          done = true;
          continue;
        }
        let ev: { choices?: { text?: string; delta?: { content?: string | null; reasoning_content?: string | null; tool_calls?: unknown } }[]; usage?: { prompt_tokens?: number; completion_tokens?: number } | null };
        try {
          ev = JSON.parse(data);
        } catch {
          continue;
        }
        const u = ev.usage;
        if (u && typeof u.completion_tokens === "number") {
          // Per-chunk usage (vLLM continuous_usage_stats) is exact, even for multi-token chunks.
          // Cumulative: whatever chunks were counted before the first usage object are included.
          const delta = u.completion_tokens - outputTokens;
          usageCompletion = u.completion_tokens;
          if (typeof u.prompt_tokens === "number") seenPrompt = promptTokens = u.prompt_tokens;
          if (delta > 0) {
            newTokens += delta;
            outputTokens += delta;
          }
          continue;
        }
        const c = ev.choices?.[0];
        const hasToken = c !== undefined && ((c.text !== undefined && c.text !== "") || !!c.delta?.content || !!c.delta?.reasoning_content || !!c.delta?.tool_calls);
        if (hasToken && usageCompletion === undefined) {
          newTokens++;
          outputTokens++;
        }
      }
      return seenPrompt === undefined ? { newTokens } : { newTokens, promptTokens: seenPrompt };
    },
    get outputTokens() {
      return outputTokens;
    },
    get promptTokens() {
      return promptTokens;
    },
    get usageCompletionTokens() {
      return usageCompletion;
    },
    get done() {
      return done;
    },
  };
}
