import type { ChatMessage } from '../schema/chat-request.ts'

// A message whose content is one string, as every rule after flattening sees it. Assistant
// content may still be absent (null/undefined), as OpenAI allows.
export interface TextMessage {
  role: 'system' | 'user'
  content: string
  name?: string
}
export interface AssistantMessage {
  role: 'assistant'
  content?: string | null
  name?: string
  reasoning_content?: string | null
}
export type FlatMessage = TextMessage | AssistantMessage
type Messages = readonly FlatMessage[]

/** The assistant turn vLLM continues from, so that the response starts inside the reasoning. */
export const THINK_PREFILL = '<think>\n'

/** Text parts joined with "\n", the way vLLM flattens them before applying the chat template. */
export function flattenMessage(message: ChatMessage): FlatMessage {
  if (message.role === 'assistant') {
    const { content } = message
    return { ...message, content: content == null ? content : joinParts(content) }
  }
  return { ...message, content: joinParts(message.content) }
}

function joinParts(content: string | readonly { text: string }[]): string {
  return typeof content === 'string' ? content : content.map((part) => part.text).join('\n')
}

export function isThinkPrefill(message: ChatMessage | FlatMessage | undefined): boolean {
  return message?.role === 'assistant' && message.content === THINK_PREFILL && message.reasoning_content == null
}

/**
 * Maps every message, returning the input array itself when no message changed, which is how
 * the pipeline tells whether a rule did anything. `change` must return its argument unchanged.
 */
export function mapMessages(messages: Messages, change: (message: FlatMessage) => FlatMessage): Messages {
  const changed = messages.map(change)
  return changed.some((message, index) => message !== messages[index]) ? changed : messages
}

export function nfcMessages(messages: Messages): Messages {
  return mapMessages(messages, (message) => {
    if (message.role !== 'assistant') {
      const content = message.content.normalize('NFC')
      return content === message.content ? message : { ...message, content }
    }
    const content = nfcOf(message.content)
    const reasoning = nfcOf(message.reasoning_content)
    if (content === message.content && reasoning === message.reasoning_content) return message
    return 'reasoning_content' in message ? { ...message, content, reasoning_content: reasoning } : { ...message, content }
  })
}

function nfcOf(text: string | null | undefined): string | null | undefined {
  return typeof text === 'string' ? text.normalize('NFC') : text
}

/**
 * Removes what an assistant turn reasoned: `reasoning_content`, and `<think>...</think>` blocks in
 * its content, as the model's chat template expects earlier turns to hold answers only.
 * `nfc` re-normalizes what was cut, because cutting out a block can bring a base letter and a
 * combining mark together that NFC would compose, and a second pass would otherwise differ.
 */
export function stripReasoning(messages: Messages, nfc: boolean): Messages {
  return mapMessages(messages, (message) => {
    if (message.role !== 'assistant') return message
    const stripped = typeof message.content === 'string' ? stripThinking(message.content) : message.content
    const content = nfc ? nfcOf(stripped) : stripped
    if (content === message.content && !('reasoning_content' in message)) return message
    const copy: AssistantMessage = { ...message, content }
    delete copy.reasoning_content
    return copy
  })
}

const THINK_START = '<think>'
const THINK_END = '</think>'

/**
 * Complete blocks go first, so an answer around a block survives. A "</think>" left after that
 * closes reasoning whose opening tag is missing (R1 output often starts inside the reasoning) or
 * a block nested in another, so everything up to the last one goes. Then no "</think>" remains,
 * hence no block either, and a second call changes nothing. Text without "</think>" is left as
 * it is (not even trimmed), so the rule only reports itself when it removed reasoning.
 */
export function stripThinking(text: string): string {
  if (!text.includes(THINK_END)) return text
  const withoutBlocks = removeBlocks(text)
  const end = withoutBlocks.lastIndexOf(THINK_END)
  return (end === -1 ? withoutBlocks : withoutBlocks.slice(end + THINK_END.length)).trim()
}

// indexOf scanning rather than /<think>[\s\S]*?<\/think>/g: that regex retries from every
// unclosed "<think>", quadratic on a prompt made of them.
function removeBlocks(text: string): string {
  let kept = ''
  let from = 0
  for (;;) {
    const start = text.indexOf(THINK_START, from)
    const end = start === -1 ? -1 : text.indexOf(THINK_END, start + THINK_START.length)
    if (end === -1) return kept + text.slice(from)
    kept += text.slice(from, start)
    from = end + THINK_END.length
  }
}
