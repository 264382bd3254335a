import type { ApiError } from '../errors.ts'
import { anthropicErrorBody } from '../errors.ts'
import type { ClientSseWriter } from '../relay/client-writer.ts'
import type { DataChunk, GenerationEnd } from '../relay/generation.ts'
import { apiClientWriter, TurnWrites, type StreamSink, type StreamSinkOptions } from '../relay/stream.ts'
import { GenerationState, messageObject, newSignature, textsOf, type MessageSettings } from './output.ts'
import { asMessagesError } from './request.ts'

// stream: true on the Messages API: the one generation as Anthropic's event sequence.
// message_start (with the prompt's token count, from the first upstream chunk) and a ping, then
// each block: content_block_start, its deltas (thinking_delta, then a signature_delta just before
// its content_block_stop; text_delta), content_block_stop; then message_delta (stop reason,
// output tokens) and message_stop. Each upstream chunk becomes its events in the turn it was
// parsed; the events of one upstream read go out in one write, as on the chat pass-through.

type Event = Record<string, unknown> & { type: string }

/** One SSE event as Anthropic frames it: `event: TYPE`, then the JSON that names its type again. */
export function eventFrame(event: Event): string {
  return `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`
}

type BlockKind = 'thinking' | 'text'

export class MessageEventStream implements StreamSink {
  readonly writer: ClientSseWriter
  committed = false
  #settings: MessageSettings
  #out: TurnWrites
  #started = false
  #open: BlockKind | null = null
  #index = 0
  #sentText = false
  #state = new GenerationState()

  constructor(settings: MessageSettings, options: StreamSinkOptions) {
    this.#settings = settings
    this.writer = apiClientWriter(options)
    this.#out = new TurnWrites(this.writer, options.observer)
  }

  chunk(chunk: DataChunk, firstToken: boolean): void {
    this.#state.read(chunk)
    // message_start carries no generation: a failover after it continues the same message.
    if (!this.#started) this.#start()
    if (firstToken) this.#out.firstToken()
    const { reasoning, content } = textsOf(chunk)
    // Thinking not asked for is not shown (nothing of it reaches the client, so failover stays
    // possible); `omitted` opens the block, whose only content is its signature.
    const { thinking } = this.#settings
    if (reasoning !== '' && thinking !== 'hidden') this.#delta('thinking', thinking === 'shown' ? reasoning : '')
    if (content !== '') this.#delta('text', content)
  }

  backendError(): void {
    // The generation ends with this error (finish reads it from the end): nothing to add here.
  }

  restart(): void {
    // Nothing of a replaced attempt's generation reached the client (the sink had not committed).
    this.#state = new GenerationState()
  }

  afterRead(): Promise<unknown> | undefined {
    this.#out.flush()
    return this.writer.backpressure()
  }

  /**
   * Ends the event stream as the generation ended: the open block closed, a text block if none
   * came (empty: the answer was cut inside the reasoning), message_delta and message_stop; or,
   * when it failed, Anthropic's `event: error` (no message_stop follows, as Anthropic ends one).
   */
  finish(end: GenerationEnd): void {
    if (!this.writer.open || end.reason === 'client_gone') return this.writer.abort()
    if (end.error) this.#fail(end.error)
    else {
      if (!this.#started) this.#start()
      if (!this.#sentText) this.#delta('text', '')
      this.#close()
      const usage = this.#state.messageUsage()
      this.#emit({
        type: 'message_delta',
        delta: this.#state.stop(),
        usage: { input_tokens: usage.input_tokens, output_tokens: usage.output_tokens },
      })
      this.#emit({ type: 'message_stop' })
    }
    this.#out.flush()
    this.writer.close()
  }

  #fail(failure: ApiError): void {
    const error = asMessagesError(failure)
    this.#emit({ ...anthropicErrorBody(error) })
  }

  #start(): void {
    this.#started = true
    const usage = { ...this.#state.messageUsage(), output_tokens: 0 }
    const message = messageObject(this.#settings, { content: [], stop: { stop_reason: null, stop_sequence: null }, usage })
    this.#emit({ type: 'message_start', message })
    this.#emit({ type: 'ping' })
  }

  /** A delta into a block of `kind`, closing the open one and opening this one first when needed. */
  #delta(kind: BlockKind, text: string): void {
    if (this.#open !== kind) {
      this.#close()
      this.#open = kind
      if (kind === 'text') this.#sentText = true
      const block = kind === 'thinking' ? { type: 'thinking', thinking: '', signature: '' } : { type: 'text', text: '' }
      this.#emit({ type: 'content_block_start', index: this.#index, content_block: block })
    }
    if (text === '') return
    this.committed = true
    const delta = kind === 'thinking' ? { type: 'thinking_delta', thinking: text } : { type: 'text_delta', text }
    this.#emit({ type: 'content_block_delta', index: this.#index, delta })
  }

  #close(): void {
    if (this.#open === null) return
    if (this.#open === 'thinking') {
      this.#emit({ type: 'content_block_delta', index: this.#index, delta: { type: 'signature_delta', signature: newSignature() } })
    }
    this.#emit({ type: 'content_block_stop', index: this.#index })
    this.#open = null
    this.#index++
  }

  #emit(event: Event): void {
    this.#out.add(eventFrame(event))
  }
}
