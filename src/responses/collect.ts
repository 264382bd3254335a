import { ApiError } from '../errors.ts'
import type { CollectingSink } from '../relay/collect.ts'
import type { DataChunk, GenerationEnd } from '../relay/generation.ts'
import { newId } from './ids.ts'
import { keepResponse, messageItem, ReasoningTokens, reasoningItem, responseObject, textsOf, type ResponseSettings } from './output.ts'

/**
 * stream: false on the Responses API: the generation collected into one `response` object, a
 * reasoning item (when the model reasoned) and a message item (when answer text came). Like the chat collector it never commits, so any failure can
 * fail over.
 */
export class ResponseCollector implements CollectingSink {
  readonly committed = false
  #settings: ResponseSettings
  #reasoning = ''
  #content = ''
  #chunks = 0
  #tokens = new ReasoningTokens()

  constructor(settings: ResponseSettings) {
    this.#settings = settings
  }

  chunk(chunk: DataChunk): void {
    this.#tokens.read(chunk)
    if (chunk.kind !== 'delta') return
    this.#chunks++
    const { reasoning, content } = textsOf(chunk)
    this.#reasoning += reasoning
    this.#content += content
  }

  backendError(): void {
    // Never called: an uncommitted sink's error events fail over or end the generation.
  }

  afterRead(): undefined {
    return undefined
  }

  restart(): void {
    this.#reasoning = ''
    this.#content = ''
    this.#chunks = 0
    this.#tokens = new ReasoningTokens()
  }

  /**
   * The response, stored first when asked (keepResponse); a backend that finished without a single
   * chunk is a 502, as on the chat route.
   */
  async answer(end: GenerationEnd): Promise<Record<string, unknown>> {
    if (this.#chunks === 0) throw new ApiError(502, 'The backend finished without sending a completion.', { code: 'upstream_empty' })
    const status = end.finishReason === 'length' ? 'incomplete' : 'completed'
    // As OpenAI answers: an answer cut inside its reasoning ends with the reasoning item
    // incomplete and no message item; only the item the cut fell in is incomplete.
    const output = [
      ...(this.#reasoning !== ''
        ? [
            reasoningItem(
              this.#settings,
              newId('rs', this.#settings.conversation),
              this.#reasoning,
              this.#content === '' ? status : 'completed',
            ),
          ]
        : []),
      ...(this.#content !== '' ? [messageItem(newId('msg', this.#settings.conversation), this.#content, status)] : []),
    ]
    const response = responseObject(this.#settings, { status, output, usage: this.#tokens.responseUsage() })
    await keepResponse(this.#settings, response)
    return response
  }
}
