import { looksLikeMath, MATH_DIRECTIVE } from './math.ts'
import type { AssistantMessage, FlatMessage, TextMessage } from './messages.ts'

// Rules that reshape the conversation. Each returns its input array itself when it changes
// nothing, which is how the pipeline reports applied rules.

type Messages = readonly FlatMessage[]

/**
 * R1 is trained without system prompts: their texts move to the front of the first user turn.
 * Whitespace-only system texts carry nothing and are dropped rather than leaving a blank
 * paragraph in the prompt.
 */
export function foldSystem(messages: Messages): Messages {
  if (!messages.some((message) => message.role === 'system')) return messages
  const preamble = messages
    .filter((message): message is TextMessage => message.role === 'system')
    .map((message) => message.content)
    .filter((text) => text.trim() !== '')
    .join('\n\n')
  const rest = messages.filter((message) => message.role !== 'system')
  if (preamble === '') return rest
  const firstUser = rest.findIndex((message) => message.role === 'user')
  if (firstUser === -1) return [{ role: 'user', content: preamble }, ...rest]
  return rest.map((message, index) => (index === firstUser ? { ...message, content: `${preamble}\n\n${message.content ?? ''}` } : message))
}

/** Turns of one role in a row become one turn: chat templates are written for alternating turns. */
export function mergeConsecutive(messages: Messages): Messages {
  const merged: FlatMessage[] = []
  for (const message of messages) {
    const previous = merged.at(-1)
    if (previous?.role === message.role) merged[merged.length - 1] = mergePair(previous, message)
    else merged.push(message)
  }
  return merged.length === messages.length ? messages : merged
}

// The first turn's other fields (name) are kept; the contents are joined as paragraphs.
function mergePair(first: FlatMessage, second: FlatMessage): FlatMessage {
  if (first.role !== 'assistant') {
    const merged: TextMessage = { ...first, content: joinTexts(first.content, second.content) ?? '' }
    return merged
  }
  const merged: AssistantMessage = { ...first, content: joinTexts(first.content, second.content) }
  const secondReasoning = second.role === 'assistant' ? second.reasoning_content : undefined
  const reasoning = joinTexts(first.reasoning_content, secondReasoning)
  if (reasoning !== undefined) merged.reasoning_content = reasoning
  return merged
}

function joinTexts(first: string | null | undefined, second: string | null | undefined): string | null | undefined {
  if (typeof first === 'string' && typeof second === 'string') return `${first}\n\n${second}`
  return typeof first === 'string' ? first : (second ?? first)
}

/** Appends R1's math directive to the last user turn once, when that turn reads as math. */
export function addMathDirective(messages: Messages): Messages {
  const index = messages.findLastIndex((message) => message.role === 'user')
  const last = messages[index]
  if (last?.role !== 'user' || last.content.includes(MATH_DIRECTIVE) || !looksLikeMath(last.content)) {
    return messages
  }
  return messages.with(index, { ...last, content: `${last.content}\n${MATH_DIRECTIVE}` })
}
