// Reads vLLM's context-length refusals (a 400 before streaming). v0.11.0's two texts come from
// `vllm/entrypoints/openai/serving_engine.py`, `_validate_input`; chat appends " None" (the
// exception's __cause__, `serving_chat.py`). v0.10.1 and earlier said "However, you requested N
// tokens (A in the messages, B in the completion)": read too, since backends may lag a version.
// v0.20.2 (`vllm/renderers/params.py`, `TokenizeParams._token_len_check`) states the output asked
// and the prompt: "...However, you requested O output tokens and your prompt contains N input
// tokens, for a total of N+O tokens." The tokenizer stops at max_model_len - O + 1 tokens
// (`get_encode_kwargs`), so for a longer prompt N is that bound, written "at least N": the prompt
// may be longer, and the room it leaves is unknown. `_text_len_check` refuses a prompt of too many
// characters before tokenizing ("...your prompt contains C characters (more than ..."): no count.
// `TokenizeParams.__post_init__` refuses an output above the context before any prompt is read
// ("max_tokens=O cannot be greater than max_model_len=max_total_tokens=T."): no count either.

export type ContextRefusal =
  /**
   * prompt + max_tokens > max_model_len: the prompt fits, the asked output does not.
   * `promptTokens` is a lower bound when `promptAtLeast` (v0.20.2 "at least N", or no count at all:
   * then max_model_len - max_tokens + 1): the room is below max_tokens but not known.
   */
  | { kind: 'max_tokens_too_large'; maxModelLen: number; promptTokens: number; maxTokens: number; promptAtLeast?: true }
  /** The prompt alone fills the context. */
  | { kind: 'prompt_too_long'; maxModelLen: number; promptTokens: number }

const TOO_LARGE =
  /'max_tokens' or 'max_completion_tokens' is too large: (\d+)\. This model's maximum context length is (\d+) tokens and your request has (\d+) input tokens/
const PROMPT_TOO_LONG = /This model's maximum context length is (\d+) tokens\. However, your request has (\d+) input tokens/
const LEGACY_BOTH =
  /This model's maximum context length is (\d+) tokens\. However, you requested \d+ tokens \((\d+) in the messages, (\d+) in the completion\)/
const LEGACY_PROMPT = /This model's maximum context length is (\d+) tokens\. However, you requested (\d+) tokens in the messages/
const V0202_TOKENS =
  /This model's maximum context length is (\d+) tokens\. However, you requested (\d+) output tokens and your prompt contains (at least )?(\d+) input tokens, for a total of/
const V0202_OUTPUT_OVER = /^(?:max_tokens|max_completion_tokens)=(\d+) cannot be greater than max_model_len=max_total_tokens=(\d+)\./
const V0202_CHARACTERS =
  /This model's maximum context length is (\d+) tokens\. However, you requested (\d+) output tokens and your prompt contains \d+ characters \(more than \d+ characters/

/** The refusal `message` states, or null when it is no context-length refusal. Pure. */
export function readContextRefusal(message: string): ContextRefusal | null {
  let match = V0202_TOKENS.exec(message)
  if (match) return fromV0202(Number(match[1]), Number(match[2]), Number(match[4]), match[3] !== undefined)
  match = V0202_CHARACTERS.exec(message)
  if (match) return fromV0202(Number(match[1]), Number(match[2]), Number(match[1]) - Number(match[2]) + 1, true)
  match = V0202_OUTPUT_OVER.exec(message)
  if (match) return fromV0202(Number(match[2]), Number(match[1]), 0, true)
  match = TOO_LARGE.exec(message)
  if (match) return tooLarge(match[2], match[3], match[1])
  match = LEGACY_BOTH.exec(message)
  if (match) return tooLarge(match[1], match[2], match[3])
  match = PROMPT_TOO_LONG.exec(message) ?? LEGACY_PROMPT.exec(message)
  if (match) return valid({ kind: 'prompt_too_long', maxModelLen: Number(match[1]), promptTokens: Number(match[2]) })
  return null
}

/**
 * The output room the refusal leaves: what max_tokens may be for the same prompt. When the prompt
 * count is a lower bound (`promptAtLeast`), this is only an upper bound on the room.
 */
export function roomLeft(refusal: ContextRefusal): number {
  return refusal.maxModelLen - refusal.promptTokens
}

/**
 * v0.20.2's numbers: the prompt alone over the context is prompt_too_long; else the asked output
 * does not fit. An "at least" count that reaches the context still leaves the prompt too long.
 */
function fromV0202(maxModelLen: number, maxTokens: number, promptTokens: number, atLeast: boolean): ContextRefusal | null {
  if (promptTokens >= maxModelLen) return valid({ kind: 'prompt_too_long', maxModelLen, promptTokens })
  const refusal: ContextRefusal = { kind: 'max_tokens_too_large', maxModelLen, promptTokens, maxTokens }
  return valid(atLeast ? { ...refusal, promptAtLeast: true } : refusal)
}

function tooLarge(maxModelLen: string | undefined, promptTokens: string | undefined, maxTokens: string | undefined): ContextRefusal | null {
  return valid({
    kind: 'max_tokens_too_large',
    maxModelLen: Number(maxModelLen),
    promptTokens: Number(promptTokens),
    maxTokens: Number(maxTokens),
  })
}

/** Numbers too long to be exact are no numbers to act on. */
function valid(refusal: ContextRefusal): ContextRefusal | null {
  const numbers = Object.values(refusal).filter((value) => typeof value === 'number')
  if (refusal.kind === 'max_tokens_too_large' && refusal.maxTokens < 1) return null
  return numbers.every((value) => Number.isSafeInteger(value)) ? refusal : null
}
