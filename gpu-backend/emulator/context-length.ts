// The context length and max_tokens, as vLLM checks them: v0.11.0's _validate_input
// (openai/serving_engine.py) and renderer (completions), v0.20.2's TokenizeParams
// (renderers/params.py) and get_max_tokens (entrypoints/utils.py). Each check answers the output
// room left, or the 400 vLLM refuses the request with.
import type { ApiError } from './errors.ts'
import type { EmulatorOptions, VllmVersion } from './options.ts'
import type { Endpoint } from './before-validators.ts'
import { optional, readInt, type Dict, type PydanticError } from './pydantic.ts'

/** A refusal of the request: its 400. */
export type Refusal = { ok: false; error: ApiError }

/** A 400 BadRequestError; `param` is a v0.20.2 VLLMValidationError's parameter (create_error_response). */
export function badRequest(message: string, param: string | null = null): Refusal {
  return { ok: false, error: { status: 400, type: 'BadRequestError', message, param } }
}

/** Chat, v0.11.0: _validate_input's two messages, wrapped as f"{e} {e.__cause__}" (so they end in " None"). */
export function chatMaxTokens(options: EmulatorOptions, prompt: number, requested: number | null): number | Refusal {
  const limit = options.maxModelLen
  if (prompt >= limit) {
    return badRequest(
      `This model's maximum context length is ${limit} tokens. However, your request has ${prompt} input tokens. ` +
        'Please reduce the length of the input messages. None',
    )
  }
  if (requested !== null && prompt + requested > limit) {
    return badRequest(
      `'max_tokens' or 'max_completion_tokens' is too large: ${requested}. This model's maximum context length is ` +
        `${limit} tokens and your request has ${prompt} input tokens (${requested} > ${limit} - ${prompt}). None`,
    )
  }
  return Math.min(limit - prompt, requested ?? Infinity)
}

/** Completions, v0.11.0: the renderer's check against max_model_len - (max_tokens or 0), printed as the limit (renderer.py). */
export function completionMaxTokens(options: EmulatorOptions, prompt: number, requested: number | null): number | Refusal {
  const maxLength = options.maxModelLen - (requested || 0)
  if (prompt > maxLength) {
    return badRequest(
      `This model's maximum context length is ${maxLength} tokens. However, your request has ${prompt} input tokens. ` +
        'Please reduce the length of the input messages.',
    )
  }
  return Math.min(options.maxModelLen - prompt, requested ?? Infinity)
}

/**
 * The requested output and the field it came from. v0.11.0 chat: `max_completion_tokens or
 * max_tokens` (0 falls through). v0.20.2 chat: max_completion_tokens when it is not None, else
 * max_tokens (openai/chat_completion/protocol.py build_tok_params; serving.py get_max_tokens).
 * Completions: max_tokens, 16 when absent.
 */
export type Requested = { tokens: number | null; param: 'max_tokens' | 'max_completion_tokens' }

/**
 * v0.20.2's TokenizeParams (renderers/params.py) with max_total_tokens = max_model_len and
 * max_output_tokens = the request's (or 0): __post_init__ refuses an output above the context
 * before anything is rendered. null: it passes.
 */
export function outputOverContext(options: EmulatorOptions, requested: Requested): Refusal | null {
  const output = requested.tokens || 0
  if (output <= options.maxModelLen) return null
  return badRequest(
    `${requested.param}=${output} cannot be greater than max_model_len=max_total_tokens=${options.maxModelLen}. Please request fewer output tokens.`,
    requested.param,
  )
}

/** tokenizer.max_chars_per_token of the R1-Distill (Qwen2.5) vocabulary: its longest token, 128 spaces (vllm/tokenizers/hf.py). */
export const MAX_CHARS_PER_TOKEN = 128

/**
 * v0.20.2's length checks on a prompt (renderers/params.py TokenizeParams), then get_max_tokens:
 * - `_text_len_check`, for a text prompt before tokenizing: more characters than
 *   max_input_tokens x max_chars_per_token is refused without tokenizing (param input_text);
 * - the tokenizer truncates a text prompt to max_input_tokens + 1 (get_encode_kwargs), so
 *   `_token_len_check` (param input_tokens) states at most that many, "at least" when it is
 *   exactly that many (token ids are not truncated);
 * - get_max_tokens (entrypoints/utils.py): min(max_model_len - prompt, the request's); 0 reaches
 *   SamplingParams ("max_tokens must be at least 1, got 0.").
 */
export function maxTokensV0202(
  options: EmulatorOptions,
  prompt: number,
  requested: Requested,
  text: { chars: number } | null,
): number | Refusal {
  const total = options.maxModelLen
  const output = requested.tokens || 0
  const maxInput = total - output
  const maxChars = maxInput * MAX_CHARS_PER_TOKEN
  if (text !== null && text.chars > maxChars) {
    return badRequest(
      `This model's maximum context length is ${total} tokens. However, you requested ${output} output tokens and your prompt ` +
        `contains ${text.chars} characters (more than ${maxChars} characters, which is the upper bound for ${maxInput} input tokens). ` +
        'Please reduce the length of the input prompt or the number of requested output tokens.',
      'input_text',
    )
  }
  const count = text !== null ? Math.min(prompt, maxInput + 1) : prompt
  if (count > maxInput) {
    const qualifier = count === maxInput + 1 ? 'at least ' : ''
    return badRequest(
      `This model's maximum context length is ${total} tokens. However, you requested ${output} output tokens and your prompt ` +
        `contains ${qualifier}${count} input tokens, for a total of ${qualifier}${count + output} tokens. ` +
        'Please reduce the length of the input prompt or the number of requested output tokens.',
      'input_tokens',
    )
  }
  return Math.min(total - prompt, requested.tokens ?? Infinity)
}

export function requestedMaxTokens(version: VllmVersion, endpoint: Endpoint, body: Dict, errors: PydanticError[]): Requested {
  const maxTokens = optional(body, 'max_tokens', readInt, errors)
  if (endpoint === 'completion') return { tokens: body.max_tokens === undefined ? 16 : maxTokens, param: 'max_tokens' }
  const maxCompletion = optional(body, 'max_completion_tokens', readInt, errors)
  if (version === '0.11.0') return { tokens: maxCompletion || maxTokens, param: 'max_tokens' }
  return maxCompletion !== null ? { tokens: maxCompletion, param: 'max_completion_tokens' } : { tokens: maxTokens, param: 'max_tokens' }
}
