import type { ApiError } from '../errors.ts'
import type { ClientSseWriter } from '../relay/client-writer.ts'
import type { DataChunk, GenerationEnd } from '../relay/generation.ts'
import { TurnWrites, apiClientWriter, type StreamSink, type StreamSinkOptions } from '../relay/stream.ts'
import { newId } from './ids.ts'
import type { ItemStatus, OutputItem } from './items.ts'
import { keepResponse, messageItem, ReasoningTokens, reasoningItem, responseObject, textsOf, type ResponseSettings } from './output.ts'
import { asResponsesError } from './request.ts'

// stream: true on the Responses API: the one generation as the Responses event sequence. Each
// upstream chunk becomes its events in the turn it was parsed; the events of one upstream read go
// out in one write, as on the chat pass-through. The reasoning is output item 0 (reasoning_text
// deltas, and summary deltas when the client asked for a summary), the answer the next item.

type Event = Record<string, unknown> & { type: string }

/** One SSE event as the Responses API frames it: its type named twice, as OpenAI sends it. */
export function eventFrame(event: Event): string {
  return `event: ${event.type}\ndata: ${JSON.stringify(event)}\n\n`
}

interface OpenItem {
  kind: 'reasoning' | 'message'
  id: string
  index: number
  text: string
}

export class ResponseEventStream implements StreamSink {
  readonly writer: ClientSseWriter
  committed = false
  #settings: ResponseSettings
  #out: TurnWrites
  #sequence = 0
  #open: OpenItem | null = null
  #done: OutputItem[] = []
  #tokens = new ReasoningTokens()

  constructor(settings: ResponseSettings, options: StreamSinkOptions) {
    this.#settings = settings
    this.writer = apiClientWriter(options)
    this.#out = new TurnWrites(this.writer, options.observer)
    // The response exists as soon as the 200 is committed; these events carry no generation, so
    // they do not commit the relay to a backend (failover stays possible).
    const response = responseObject(settings, { status: 'in_progress', output: [], usage: null })
    this.#emit({ type: 'response.created', response })
    this.#emit({ type: 'response.in_progress', response })
    this.#out.flush()
  }

  chunk(chunk: DataChunk, firstToken: boolean): void {
    this.#tokens.read(chunk)
    const { reasoning, content } = textsOf(chunk)
    if (reasoning === '' && content === '') return
    if (firstToken) this.#out.firstToken()
    this.committed = true
    if (reasoning !== '') this.#delta('reasoning', reasoning)
    if (content !== '') this.#delta('message', content)
  }

  backendError(): void {
    // The generation ends with this error (finish reads it from the end): nothing to add here.
  }

  restart(): void {
    // Nothing of a replaced attempt reached the client (the sink had not committed).
    this.#tokens = new ReasoningTokens()
  }

  afterRead(): Promise<unknown> | undefined {
    this.#out.flush()
    return this.writer.backpressure()
  }

  /**
   * Ends the event stream as the generation ended: response.completed, .incomplete, or error +
   * response.failed. A stored response is stored before its last event (keepResponse), so a
   * client that continues it the moment it ends finds it.
   */
  async finish(end: GenerationEnd): Promise<void> {
    if (!this.writer.open || end.reason === 'client_gone') return this.writer.abort()
    if (end.error) await this.#fail(end.error)
    else {
      const status = end.finishReason === 'length' ? 'incomplete' : 'completed'
      // The item the answer ended in takes the response's status; no empty message item is added
      // when no answer text came (an answer cut inside its reasoning, as OpenAI ends one).
      this.#close(status)
      const response = responseObject(this.#settings, { status, output: this.#done, usage: this.#tokens.responseUsage() })
      await keepResponse(this.#settings, response)
      this.#emit({ type: status === 'completed' ? 'response.completed' : 'response.incomplete', response })
    }
    this.#out.flush()
    this.writer.close()
  }

  /** A failure after the 200: named in the Responses request's fields (vLLM's context refusal says `messages`). */
  async #fail(failure: ApiError): Promise<void> {
    const error = asResponsesError(failure)
    this.#close('incomplete')
    const code = error.code ?? 'server_error'
    this.#emit({ type: 'error', code, message: error.message, param: error.param })
    const response = responseObject(this.#settings, { status: 'failed', output: this.#done, usage: this.#tokens.responseUsage(), error })
    await keepResponse(this.#settings, response)
    this.#emit({ type: 'response.failed', response })
  }

  #delta(kind: OpenItem['kind'], text: string): void {
    if (this.#open?.kind !== kind) {
      this.#close('completed')
      this.#openItem(kind)
    }
    const item = this.#open as OpenItem
    item.text += text
    const at = { item_id: item.id, output_index: item.index }
    if (kind === 'message') return this.#emit({ type: 'response.output_text.delta', ...at, content_index: 0, delta: text, logprobs: [] })
    this.#emit({ type: 'response.reasoning_text.delta', ...at, content_index: 0, delta: text })
    if (this.#settings.summary) this.#emit({ type: 'response.reasoning_summary_text.delta', ...at, summary_index: 0, delta: text })
  }

  #openItem(kind: OpenItem['kind']): void {
    const item: OpenItem = {
      kind,
      id: newId(kind === 'message' ? 'msg' : 'rs', this.#settings.conversation),
      index: this.#done.length,
      text: '',
    }
    this.#open = item
    const at = { item_id: item.id, output_index: item.index }
    if (kind === 'message') {
      this.#emit({
        type: 'response.output_item.added',
        output_index: item.index,
        item: { ...messageItem(item.id, '', 'in_progress'), content: [] },
      })
      this.#emit({ type: 'response.content_part.added', ...at, content_index: 0, part: { type: 'output_text', text: '', annotations: [] } })
      return
    }
    this.#emit({
      type: 'response.output_item.added',
      output_index: item.index,
      item: reasoningItem(this.#settings, item.id, '', 'in_progress'),
    })
    this.#emit({ type: 'response.content_part.added', ...at, content_index: 0, part: { type: 'reasoning_text', text: '' } })
    if (this.#settings.summary) {
      this.#emit({ type: 'response.reasoning_summary_part.added', ...at, summary_index: 0, part: { type: 'summary_text', text: '' } })
    }
  }

  /** Closes the open item with its done events and keeps it for the final response. */
  #close(status: ItemStatus): void {
    const item = this.#open
    if (!item) return
    this.#open = null
    const at = { item_id: item.id, output_index: item.index }
    let done: OutputItem
    if (item.kind === 'message') {
      done = messageItem(item.id, item.text, status)
      this.#emit({ type: 'response.output_text.done', ...at, content_index: 0, text: item.text, logprobs: [] })
      this.#emit({ type: 'response.content_part.done', ...at, content_index: 0, part: done.content[0] })
    } else {
      done = reasoningItem(this.#settings, item.id, item.text, status)
      this.#emit({ type: 'response.reasoning_text.done', ...at, content_index: 0, text: item.text })
      this.#emit({ type: 'response.content_part.done', ...at, content_index: 0, part: { type: 'reasoning_text', text: item.text } })
      if (this.#settings.summary) {
        const part = { type: 'summary_text', text: item.text }
        this.#emit({ type: 'response.reasoning_summary_text.done', ...at, summary_index: 0, text: item.text })
        this.#emit({ type: 'response.reasoning_summary_part.done', ...at, summary_index: 0, part })
      }
    }
    this.#emit({ type: 'response.output_item.done', output_index: item.index, item: done })
    this.#done.push(done)
  }

  #emit(event: Event): void {
    this.#out.add(eventFrame({ ...event, sequence_number: this.#sequence++ }))
  }
}
