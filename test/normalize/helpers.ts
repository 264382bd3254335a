import { normalizeChatRequest, resolveRules, type Normalized, type RuleName } from '../../src/normalize/index.ts'
import type { ChatMessage, ChatRequest } from '../../src/schema/chat-request.ts'

export function request(messages: ChatMessage[], extra: Partial<ChatRequest> = {}): ChatRequest {
  return { model: 'deepseek-r1', messages, ...extra }
}

export const user = (content: ChatMessage['content'] & {}): ChatMessage => ({ role: 'user', content })
export const system = (content: string): ChatMessage => ({ role: 'system', content })
export const assistant = (content: string | null, extra: { reasoning_content?: string | null } = {}): ChatMessage => ({
  role: 'assistant',
  content,
  ...extra,
})

/** Normalizes with only the named rules switched on (none when empty). */
export function withRules(input: ChatRequest, names: RuleName[], templateAddsThink = true): Normalized {
  const rules = resolveRules(names.length === 0 ? 'none' : names.join(','))
  return normalizeChatRequest(input, { rules, templateAddsThink })
}
