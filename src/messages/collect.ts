import { ApiError } from '../errors.ts'
import type { CollectingSink } from '../relay/collect.ts'
import type { DataChunk } from '../relay/generation.ts'
import {
  GenerationState,
  messageObject,
  newSignature,
  textsOf,
  type AnthropicMessage,
  type ContentBlock,
  type MessageSettings,
} from './output.ts'

/**
 * stream: false on the Messages API: the generation collected into one `message` object, a
 * thinking block first when the request asked for thinking (and the model reasoned), then the text
 * block, always there (empty when the answer was cut inside the reasoning), so a client that reads
 * content[0].text (or the last block's) finds it. Like the chat collector it never commits, so any
 * failure can fail over.
 */
export class MessageCollector implements CollectingSink {
  readonly committed = false
  #settings: MessageSettings
  #thinking = ''
  #text = ''
  #chunks = 0
  #state = new GenerationState()

  constructor(settings: MessageSettings) {
    this.#settings = settings
  }

  chunk(chunk: DataChunk): void {
    this.#state.read(chunk)
    if (chunk.kind !== 'delta') return
    this.#chunks++
    const { reasoning, content } = textsOf(chunk)
    this.#thinking += reasoning
    this.#text += content
  }

  backendError(): void {
    // Never called: an uncommitted sink's error events fail over or end the generation.
  }

  afterRead(): undefined {
    return undefined
  }

  restart(): void {
    this.#thinking = ''
    this.#text = ''
    this.#chunks = 0
    this.#state = new GenerationState()
  }

  /** The message; a backend that finished without a single chunk is a 502, as on the chat route. */
  answer(): AnthropicMessage {
    if (this.#chunks === 0) throw new ApiError(502, 'The backend finished without sending a completion.', { code: 'upstream_empty' })
    const content: ContentBlock[] = []
    const { thinking } = this.#settings
    if (thinking !== 'hidden' && this.#thinking !== '') {
      content.push({ type: 'thinking', thinking: thinking === 'shown' ? this.#thinking : '', signature: newSignature() })
    }
    content.push({ type: 'text', text: this.#text })
    return messageObject(this.#settings, { content, stop: this.#state.stop(), usage: this.#state.messageUsage() })
  }
}
