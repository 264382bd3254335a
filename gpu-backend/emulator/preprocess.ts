// The time vLLM v0.11.0 spends on a prompt before it answers (--preprocess-ms-per-token X, default 0:
// none). For chat, serving_chat.py create_chat_completion awaits serving_engine.py _preprocess_chat
// and only then returns the StreamingResponse (api_server.py create_chat_completion), so the
// response headers, for stream: true too, and a refusal found there (the context length in
// _validate_input, SamplingParams) come after it. _preprocess_chat does two things:
//   - renders the chat template: entrypoints/chat_utils.py apply_hf_chat_template (after
//     parse_chat_messages_futures), a plain call inside the coroutine, so it runs ON the event loop
//     and blocks every other request of that API server, /health included (api-loop.ts);
//   - tokenizes the rendered text: _tokenize_prompt_input_async -> _normalize_prompt_text_to_input
//     -> AsyncMicrobatchTokenizer (vllm/utils/__init__.py), whose batches run in a single-thread
//     ThreadPoolExecutor "so the event loop stays responsive": OFF the loop. _validate_input follows.
// A completion's text prompt is only tokenized (entrypoints/renderer.py CompletionRenderer._tokenize,
// the same async tokenizer): all off the loop; token ids are not tokenized at all. /tokenize goes
// through the same two paths (serving_tokenization.py create_tokenize).
//
// How the total promptTokens x X is split: the render's share, CHAT_RENDER_SHARE, is what we
// measured, rounded up. With jinja2 3.1.6's ImmutableSandboxedEnvironment (what transformers renders
// with) on an R1-Distill-style template, against HF tokenizers 0.23's encode of the rendered text,
// the render took 1-3% of render + tokenize for 3 to 201 messages of 3,300-4,500 tokens, 10% for a
// 158-token prompt; 5% also covers the other per-message work on the loop that was not measured
// (parse_chat_messages_futures, _validate_input). The rest is the tokenizer, off the loop.
// Not modelled: the tokenizer thread is shared (one executor per API server), but concurrent
// prompts are encoded together in one batched call (AsyncMicrobatchTokenizer._batch_encode_loop), so
// here each request's tokenization runs on its own, in parallel: never slower than vLLM.

import type { ApiLoop } from './api-loop.ts'
import type { Preprocessing } from './validate.ts'

/** Of a chat request's preprocessing time, the part on the event loop (the chat template's render). */
export const CHAT_RENDER_SHARE = 0.05

/** The whole preprocessing time of a prompt, in ms. */
export function preprocessMs(msPerToken: number, preprocessed: Preprocessing): number {
  return preprocessed.tokens * msPerToken
}

/**
 * Waits as vLLM's handler does before it answers: the render on the loop (holding it), the
 * tokenizer off it, then the handler resumes on the loop, in turn. Callers skip it when
 * preprocessMs is 0, so the default adds no wait at all.
 */
export async function preprocess(loop: ApiLoop, msPerToken: number, preprocessed: Preprocessing): Promise<void> {
  const total = preprocessMs(msPerToken, preprocessed)
  const render = preprocessed.chatTemplate ? total * CHAT_RENDER_SHARE : 0
  if (render > 0) await loop.work(render)
  await loop.offLoop(total - render)
  await loop.free()
}
