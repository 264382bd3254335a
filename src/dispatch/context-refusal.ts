// Reads vLLM's context-length refusals (a 400 before streaming). v0.11.0's two texts come from
// `vllm/entrypoints/openai/serving_engine.py`, `_validate_input`; chat appends " None" (the
// exception's __cause__, `serving_chat.py`). v0.10.1 and earlier said "However, you requested N
// tokens (A in the messages, B in the completion)": read too, since backends may lag a version.

export type ContextRefusal =
  /** prompt + max_tokens > max_model_len: the prompt fits, the asked output does not. */
  | { kind: 'max_tokens_too_large'; maxModelLen: number; promptTokens: number; maxTokens: number }
  /** The prompt alone fills the context. */
  | { kind: 'prompt_too_long'; maxModelLen: number; promptTokens: number }

const TOO_LARGE =
  /'max_tokens' or 'max_completion_tokens' is too large: (\d+)\. This model's maximum context length is (\d+) tokens and your request has (\d+) input tokens/
const PROMPT_TOO_LONG = /This model's maximum context length is (\d+) tokens\. However, your request has (\d+) input tokens/
const LEGACY_BOTH =
  /This model's maximum context length is (\d+) tokens\. However, you requested \d+ tokens \((\d+) in the messages, (\d+) in the completion\)/
const LEGACY_PROMPT = /This model's maximum context length is (\d+) tokens\. However, you requested (\d+) tokens in the messages/

/** The refusal `message` states, or null when it is no context-length refusal. Pure. */
export function readContextRefusal(message: string): ContextRefusal | null {
  let match = TOO_LARGE.exec(message)
  if (match) return tooLarge(match[2], match[3], match[1])
  match = LEGACY_BOTH.exec(message)
  if (match) return tooLarge(match[1], match[2], match[3])
  match = PROMPT_TOO_LONG.exec(message) ?? LEGACY_PROMPT.exec(message)
  if (match) return valid({ kind: 'prompt_too_long', maxModelLen: Number(match[1]), promptTokens: Number(match[2]) })
  return null
}

/** The output room the refusal leaves: what max_tokens may be for the same prompt. */
export function roomLeft(refusal: ContextRefusal): number {
  return refusal.maxModelLen - refusal.promptTokens
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
  return numbers.every((value) => Number.isSafeInteger(value)) ? refusal : null
}
