import { ApiError } from '../errors.ts'
import { askedMaxTokens, type ChatRequest } from './chat-request.ts'
import { promptTokenFloor } from './prompt-floor.ts'
import { estimatePromptTokens } from './token-estimate.ts'

export interface Budget {
  /** The backends' context length (vLLM --max-model-len). */
  maxModelLen: number
  /** The key's cap on output tokens, or null for none. */
  maxOutputTokens: number | null
}

/** A chat request as sent upstream: the gateway's prefill sets vLLM's two template switches. */
export type BudgetedRequest = ChatRequest & { continue_final_message?: boolean; add_generation_prompt?: boolean }

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
 * What it does refuse is a request that certainly does not fit (refuseCertainOverflow).
 */
export function applyContextBudget<T extends BudgetedRequest>(request: T, budget: Budget): Budgeted<T> {
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
  // Only a max_tokens the client chose: the key's cap is refitted to vLLM's count (src/dispatch/context-refusal.ts).
  refuseCertainOverflow(request, capped ? null : asked, budget.maxModelLen)
  // The output can never exceed the context, whatever max_tokens says; never negative either.
  const output = Math.max(0, Math.min(sent ?? budget.maxModelLen - promptTokens, budget.maxModelLen))
  const reserveTokens = promptTokens + (request.n ?? 1) * output
  if (!capped) return { request, promptTokens, reserveTokens, gatewayMaxTokens: false }
  const fitted: T = { ...request, max_tokens: cap }
  delete fitted.max_completion_tokens
  return { request: fitted, promptTokens, reserveTokens, gatewayMaxTokens: true }
}

/**
 * Refuses a request that certainly does not fit, with vLLM's 400 (`serving_engine.py`,
 * `_validate_input`: prompt >= max_model_len, or prompt + max_tokens > max_model_len) worded for a
 * bound, before any backend or rate-limit work. The prompt counted is a lower bound
 * (src/schema/prompt-floor.ts), so whatever might fit still goes to vLLM, which counts exactly.
 * `maxTokens` is the client's own max_tokens as sent, or null.
 */
export function refuseCertainOverflow(request: BudgetedRequest, maxTokens: number | null, maxModelLen: number): void {
  const floor = promptTokenFloor(request.messages, {
    addGenerationPrompt: request.add_generation_prompt,
    continueFinalMessage: request.continue_final_message,
  })
  if (floor >= maxModelLen) {
    throw new ApiError(
      400,
      `This model's maximum context length is ${maxModelLen} tokens. However, your request has at least ${floor} input tokens. ` +
        'Please reduce the length of the input messages.',
      { param: 'messages', code: 'context_length_exceeded' },
    )
  }
  if (maxTokens !== null && floor + maxTokens > maxModelLen) {
    // vLLM reads max_completion_tokens first (askedMaxTokens): name the field whose value is quoted.
    const param = request.max_completion_tokens ? 'max_completion_tokens' : 'max_tokens'
    throw new ApiError(
      400,
      `'max_tokens' or 'max_completion_tokens' is too large: ${maxTokens}. This model's maximum context length is ${maxModelLen} tokens ` +
        `and your request has at least ${floor} input tokens (${maxTokens} > ${maxModelLen} - ${floor}).`,
      { param, code: 'context_length_exceeded' },
    )
  }
}

function messageText(message: ChatRequest['messages'][number]): string {
  const { content } = message
  if (content == null) return ''
  return typeof content === 'string' ? content : content.map((part) => part.text).join('\n')
}
