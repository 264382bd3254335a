import { ApiError } from '../errors.ts'
import type { ChatRequest } from '../schema/chat-request.ts'
import { addMathDirective, foldSystem, mergeConsecutive } from './conversation.ts'
import { flattenMessage, isThinkPrefill, nfcMessages, stripReasoning, THINK_PREFILL, type FlatMessage } from './messages.ts'
import type { RuleName, RuleSwitches } from './rules.ts'

/**
 * What goes to vLLM: the client's request plus vLLM's prefill switches, which continue the last
 * assistant message instead of opening a new turn.
 */
export type UpstreamChatRequest = ChatRequest & { continue_final_message?: boolean; add_generation_prompt?: boolean }

export interface NormalizeOptions {
  rules: Readonly<RuleSwitches>
  /** The model revision's chat template already ends the prompt with "<think>\n". */
  templateAddsThink: boolean
}

export interface Normalized {
  request: UpstreamChatRequest
  /** Rules that changed something, in RULE_NAMES order (the order they run in). */
  applied: RuleName[]
}

/**
 * Applies the switched-on DeepSeek-R1 prompt rules. Pure: the input is never mutated. Every rule
 * is idempotent, so normalizing the output again changes nothing and reports no rule.
 * Accepts an UpstreamChatRequest too, so that its own output can go through again.
 * Throws 400 empty_prompt when no user message is left with text.
 */
export function normalizeChatRequest(request: UpstreamChatRequest, options: NormalizeOptions): Normalized {
  const { rules } = options
  const applied: RuleName[] = []
  const run = <T>(name: RuleName, value: T, rule: (value: T) => T): T => {
    if (!rules[name]) return value
    const next = rule(value)
    if (next !== value) applied.push(name)
    return next
  }

  const flat = request.messages.map(flattenMessage)
  // A prefill from an earlier pass (or from the client) is not a turn: merging, trimming or
  // stripping it would change what the response starts with, so it sits out the message rules.
  const prefill = isThinkPrefill(flat.at(-1)) ? flat.pop() : undefined
  let messages: readonly FlatMessage[] = flat
  messages = run('nfc', messages, nfcMessages)
  messages = run('strip_reasoning', messages, (current) => stripReasoning(current, rules.nfc))
  messages = run('fold_system', messages, foldSystem)
  messages = run('merge_consecutive', messages, mergeConsecutive)
  messages = run('math_directive', messages, addMathDirective)
  requireUserText(messages)

  let upstream: UpstreamChatRequest = { ...request, messages: prefill ? [...messages, prefill] : [...messages] }
  upstream = run('think_prefix', upstream, (current) => (options.templateAddsThink ? current : prefillThink(current)))
  upstream = run('temperature', upstream, clampTemperature)
  upstream = run('top_p', upstream, defaultTopP)
  return { request: upstream, applied }
}

function requireUserText(messages: readonly FlatMessage[]): void {
  if (messages.some((message) => message.role === 'user' && message.content.trim() !== '')) return
  throw new ApiError(400, 'The prompt is empty: no user message has any text.', {
    param: 'messages',
    code: 'empty_prompt',
  })
}

/**
 * R1 sometimes skips its reasoning unless the response starts with "<think>\n". When the chat
 * template does not put it there, an assistant message holding it is continued instead.
 */
function prefillThink(request: UpstreamChatRequest): UpstreamChatRequest {
  const hasPrefill = isThinkPrefill(request.messages.at(-1))
  if (hasPrefill && request.continue_final_message === true && request.add_generation_prompt === false) return request
  return {
    ...request,
    messages: hasPrefill ? request.messages : [...request.messages, { role: 'assistant', content: THINK_PREFILL }],
    continue_final_message: true,
    add_generation_prompt: false,
  }
}

/** R1's recommended range is 0.5-0.7; 0.6 when the client has no preference. */
function clampTemperature(request: UpstreamChatRequest): UpstreamChatRequest {
  const { temperature } = request
  const clamped = temperature == null ? 0.6 : Math.min(0.7, Math.max(0.5, temperature))
  return clamped === temperature ? request : { ...request, temperature: clamped }
}

/** 0.95 is R1's recommended top_p; a client's own value is respected. */
function defaultTopP(request: UpstreamChatRequest): UpstreamChatRequest {
  return request.top_p == null ? { ...request, top_p: 0.95 } : request
}
