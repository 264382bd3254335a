import { ApiError } from '../errors.ts'
import type { CompletionChunk, Usage } from './chunk.ts'
import type { DataChunk, GenerationEnd, GenerationSink } from './generation.ts'

// A `stream: false` request is still streamed from the backend (one upstream path, the same
// deadlines, and a first-token time for every request) and collected here into one
// `chat.completion` object. Nothing of the answer reaches the client before the end (a 200
// committed early carries only whitespace until then, see answerCommitted in chat-relay.ts), so
// this sink never commits: any failure, an error event included, can fail over to the next backend.

export interface ChatCompletion {
  id: string
  object: 'chat.completion'
  created: number
  model: string
  choices: CompletionChoice[]
  usage: Usage | null
}

interface CompletionChoice {
  index: number
  // null when no answer text came (only reasoning), as vLLM's reasoning parser gives it
  message: { role: 'assistant'; content: string | null; reasoning_content?: string }
  logprobs: { content: unknown[] } | null
  finish_reason: string | null
  /** vLLM's: the matched stop string (or stop token id), as the stream's finish chunk reported it. */
  stop_reason: string | number | null
}

interface ChoiceParts {
  content: string
  reasoning: string
  logprobs: unknown[] | null
  finishReason: string | null
  stopReason: string | number | null
}

/** A sink that collects the whole answer (stream: false); `answer` is the client's JSON body (once stored, for a stored response). */
export interface CollectingSink extends GenerationSink {
  answer(end: GenerationEnd): unknown
}

export class CompletionCollector implements CollectingSink {
  readonly committed = false
  #head: CompletionChunk | null = null
  #usage: Usage | null = null
  #choices = new Map<number, ChoiceParts>()

  chunk(chunk: DataChunk): void {
    if (chunk.kind === 'usage') {
      this.#usage = chunk.usage
      return
    }
    this.#head ??= chunk.chunk
    for (const choice of chunk.chunk.choices) this.#add(choice)
  }

  backendError(): void {
    // Never called: an uncommitted sink's error events fail over or end the generation.
  }

  afterRead(): undefined {
    return undefined
  }

  restart(): void {
    this.#head = null
    this.#usage = null
    this.#choices.clear()
  }

  /** The chat completion does not depend on how the generation ended (its finish_reason says). */
  answer(): ChatCompletion {
    return this.completion()
  }

  /** The collected answer; a backend that finished without a single chunk is a 502. */
  completion(): ChatCompletion {
    const head = this.#head
    if (!head) throw new ApiError(502, 'The backend finished without sending a completion.', { code: 'upstream_empty' })
    return {
      id: head.id,
      object: 'chat.completion',
      created: head.created,
      model: head.model,
      choices: [...this.#choices.entries()].sort(([a], [b]) => a - b).map(([index, parts]) => toChoice(index, parts)),
      usage: this.#usage,
    }
  }

  #add(choice: CompletionChunk['choices'][number]): void {
    let parts = this.#choices.get(choice.index)
    if (!parts) {
      parts = { content: '', reasoning: '', logprobs: null, finishReason: null, stopReason: null }
      this.#choices.set(choice.index, parts)
    }
    parts.content += choice.delta?.content ?? ''
    parts.reasoning += choice.delta?.reasoning_content ?? ''
    const tokens = choice.logprobs?.content
    if (Array.isArray(tokens)) (parts.logprobs ??= []).push(...tokens)
    if (choice.finish_reason) {
      parts.finishReason = choice.finish_reason
      parts.stopReason = (choice as { stop_reason?: string | number | null }).stop_reason ?? null
    }
  }
}

function toChoice(index: number, parts: ChoiceParts): CompletionChoice {
  // vLLM's deepseek_r1 parser answers `content or None`: no answer text is null, never "".
  const message: CompletionChoice['message'] = { role: 'assistant', content: parts.content === '' ? null : parts.content }
  if (parts.reasoning) message.reasoning_content = parts.reasoning
  return {
    index,
    message,
    logprobs: parts.logprobs ? { content: parts.logprobs } : null,
    finish_reason: parts.finishReason,
    stop_reason: parts.stopReason,
  }
}
