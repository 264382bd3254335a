import type { DataChunk } from '../relay/generation.ts'
import type { Usage } from '../relay/chunk.ts'
import type { ThinkingDisplay } from './request.ts'

// The Anthropic Messages API objects the gateway answers with (the shapes of @anthropic-ai/sdk's
// resources/messages: Message, ContentBlock, Usage, the stream events), shared by the stream:
// false collector and the event stream.

/** What a message says of its request, and whether its thinking is shown. */
export interface MessageSettings {
  id: string
  model: string
  /**
   * What the answer shows of the reasoning: thinking blocks only when the request asked for
   * thinking (`shown`; `omitted`: the blocks with their signature, without the text). DeepSeek-R1
   * reasons either way; a client that did not ask reads content[0].text.
   */
  thinking: ThinkingDisplay
}

export interface MessageUsage {
  input_tokens: number
  output_tokens: number
  cache_creation_input_tokens: null
  cache_read_input_tokens: null
}

export type StopReason = 'end_turn' | 'max_tokens' | 'stop_sequence'

export type ContentBlock = { type: 'thinking'; thinking: string; signature: string } | { type: 'text'; text: string; citations?: null }

export interface AnthropicMessage {
  id: string
  type: 'message'
  role: 'assistant'
  model: string
  content: ContentBlock[]
  stop_reason: StopReason | null
  stop_sequence: string | null
  usage: MessageUsage
}

/** 24 random hex digits after `msg_`. */
export function newMessageId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12))
  return `msg_${Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('')}`
}

/**
 * A thinking block's signature. Anthropic's verifies the thinking when it is sent back; here it is
 * opaque (a random uuid's hex, as vLLM's own endpoint makes it) and never checked, since thinking
 * sent back is dropped before the prompt is built.
 */
export function newSignature(): string {
  return crypto.randomUUID().replaceAll('-', '')
}

/**
 * What the generation says of itself as it goes: the last usage the backend reported (it reports
 * the running usage on every chunk), and the first choice's finish reason and vLLM's stop_reason
 * (the matched stop string, or a stop token's id).
 */
export class GenerationState {
  usage: Usage | null = null
  finishReason: string | null = null
  stopReason: string | number | null = null

  read(chunk: DataChunk): void {
    if (chunk.usage) this.usage = chunk.usage
    if (chunk.kind !== 'delta') return
    const choice = chunk.chunk.choices.find((candidate) => candidate.index === 0)
    if (!choice?.finish_reason) return
    this.finishReason = choice.finish_reason
    this.stopReason = (choice as { stop_reason?: string | number | null }).stop_reason ?? null
  }

  /** Anthropic's stop_reason and stop_sequence for how the generation finished. */
  stop(): { stop_reason: StopReason; stop_sequence: string | null } {
    if (this.finishReason === 'length') return { stop_reason: 'max_tokens', stop_sequence: null }
    if (typeof this.stopReason === 'string') return { stop_reason: 'stop_sequence', stop_sequence: this.stopReason }
    return { stop_reason: 'end_turn', stop_sequence: null }
  }

  messageUsage(): MessageUsage {
    return {
      input_tokens: this.usage?.prompt_tokens ?? 0,
      output_tokens: this.usage?.completion_tokens ?? 0,
      cache_creation_input_tokens: null,
      cache_read_input_tokens: null,
    }
  }
}

/** The first choice's reasoning and answer text of a chunk. */
export function textsOf(chunk: DataChunk): { reasoning: string; content: string } {
  if (chunk.kind !== 'delta') return { reasoning: '', content: '' }
  const delta = chunk.chunk.choices.find((choice) => choice.index === 0)?.delta
  return { reasoning: delta?.reasoning_content ?? '', content: delta?.content ?? '' }
}

export function messageObject(
  settings: MessageSettings,
  state: { content: ContentBlock[]; stop: { stop_reason: StopReason | null; stop_sequence: string | null }; usage: MessageUsage },
): AnthropicMessage {
  return {
    id: settings.id,
    type: 'message',
    role: 'assistant',
    model: settings.model,
    content: state.content,
    stop_reason: state.stop.stop_reason,
    stop_sequence: state.stop.stop_sequence,
    usage: state.usage,
  }
}
