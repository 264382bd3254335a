import { ApiError } from '../errors.ts'
import type { ChatRequest } from './chat-request.ts'
import { estimatePromptTokens } from './token-estimate.ts'

export interface Budget {
  /** The backends' context length (vLLM --max-model-len). */
  maxModelLen: number
  /** The key's cap on output tokens, or null for none. */
  maxOutputTokens: number | null
}

/**
 * Fits the request into the model's context before any GPU is used: a prompt that alone does
 * not fit is refused (400); otherwise max_tokens is lowered so prompt + output fits, and capped by
 * the key's limit. Returns the estimate too. Pure.
 */
export function applyContextBudget<T extends ChatRequest>(request: T, budget: Budget): { request: T; promptTokens: number } {
  const promptTokens = estimatePromptTokens(request.messages.map(messageText))
  const room = budget.maxModelLen - promptTokens
  if (room < 1) {
    throw new ApiError(
      400,
      `This model's maximum context length is ${budget.maxModelLen} tokens; your messages are about ${promptTokens} tokens. Please shorten them.`,
      { param: 'messages', code: 'context_length_exceeded' },
    )
  }
  const asked = request.max_completion_tokens ?? request.max_tokens ?? null
  const capped = Math.min(asked ?? Number.POSITIVE_INFINITY, room, budget.maxOutputTokens ?? Number.POSITIVE_INFINITY)
  if (capped === (asked ?? Number.POSITIVE_INFINITY)) return { request, promptTokens }
  const fitted: T = { ...request, max_tokens: capped }
  delete fitted.max_completion_tokens
  return { request: fitted, promptTokens }
}

function messageText(message: ChatRequest['messages'][number]): string {
  const { content } = message
  if (content == null) return ''
  return typeof content === 'string' ? content : content.map((part) => part.text).join('\n')
}
