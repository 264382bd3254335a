import { ApiError } from '../errors.ts'
import { askedMaxTokens, type ChatRequest } from './chat-request.ts'
import { estimatePromptTokens } from './token-estimate.ts'

export interface Budget {
  /** The backends' context length (vLLM --max-model-len). */
  maxModelLen: number
  /** The key's cap on output tokens, or null for none. */
  maxOutputTokens: number | null
}

export interface Budgeted<T> {
  request: T
  /** The estimated prompt tokens (the estimate, not the tokenizer's count). */
  promptTokens: number
  /** Tokens to reserve against the key's limit: the estimate plus the most output allowed, per choice. */
  reserveTokens: number
  /** The gateway wrote max_tokens (the key's cap), so a "too large" refusal may be retried with the room vLLM states. */
  gatewayMaxTokens: boolean
}

/**
 * Sizes the request against the key's limits. Pure. The estimate only sizes the rate-limit
 * reservation: it never refuses a prompt and never writes max_tokens, because it can be off both
 * ways and vLLM, which counts exactly, uses the whole remaining context when max_tokens is absent
 * (`vllm/entrypoints/utils.py`, get_max_tokens) and refuses a prompt that does not fit with its
 * own 400. The one max_tokens the gateway writes is the key's output cap: min(asked, cap).
 */
export function applyContextBudget<T extends ChatRequest>(request: T, budget: Budget): Budgeted<T> {
  const promptTokens = estimatePromptTokens(request.messages.map(messageText))
  const asked = askedMaxTokens(request)
  const cap = budget.maxOutputTokens
  const capped = cap !== null && (asked === null || asked > cap)
  const sent = capped ? cap : asked
  if (capped && request.min_tokens != null && request.min_tokens > cap) {
    throw new ApiError(400, `min_tokens (${request.min_tokens}) is above this key's output cap of ${cap} tokens.`, {
      param: 'min_tokens',
      code: 'invalid_value',
    })
  }
  // The output can never exceed the context, whatever max_tokens says; never negative either.
  const output = Math.max(0, Math.min(sent ?? budget.maxModelLen - promptTokens, budget.maxModelLen))
  const reserveTokens = promptTokens + (request.n ?? 1) * output
  if (!capped) return { request, promptTokens, reserveTokens, gatewayMaxTokens: false }
  const fitted: T = { ...request, max_tokens: cap }
  delete fitted.max_completion_tokens
  return { request: fitted, promptTokens, reserveTokens, gatewayMaxTokens: true }
}

function messageText(message: ChatRequest['messages'][number]): string {
  const { content } = message
  if (content == null) return ''
  return typeof content === 'string' ? content : content.map((part) => part.text).join('\n')
}
