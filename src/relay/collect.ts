import { ApiError } from '../errors.ts'
import { carriesToken, ChunkReader, type CompletionChunk, type Usage } from './chunk.ts'
import type { RelayObserver } from '../telemetry/trace.ts'
import { pumpEvents } from './events.ts'
import type { RelaySource } from './stream.ts'
import { upstreamTruncated } from './upstream-call.ts'

// A `stream: false` request is still streamed from the backend (one upstream path, the same
// deadlines, and a first-token time for every request) and collected here into one
// `chat.completion` object.

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
  message: { role: 'assistant'; content: string; reasoning_content?: string }
  logprobs: { content: unknown[] } | null
  finish_reason: string | null
}

interface ChoiceParts {
  content: string
  reasoning: string
  logprobs: unknown[] | null
  finishReason: string | null
}

export async function collectCompletion(source: RelaySource, observer?: RelayObserver): Promise<ChatCompletion> {
  const { upstream, call } = source
  const reader = new ChunkReader({ reasoningInContent: source.reasoningInContent })
  let head: CompletionChunk | undefined
  let usage: Usage | null = null
  const choices = new Map<number, ChoiceParts>()
  let sawToken = false

  const onData = (data: string): boolean => {
    const chunk = reader.read(data)
    call.chunkArrived(chunk)
    if (chunk.kind === 'done') return false
    if (chunk.kind === 'error') throw chunk.error
    if (!sawToken && carriesToken(chunk)) {
      sawToken = true
      observer?.firstTokenArrived()
    }
    if (chunk.kind === 'usage') {
      usage = chunk.usage
      return true
    }
    head ??= chunk.chunk
    for (const choice of chunk.chunk.choices) addDelta(choices, choice)
    return true
  }

  try {
    const end = await pumpEvents(upstream, onData, { signal: call.signal })
    if (end === 'eof') throw upstreamTruncated()
  } catch (error) {
    throw call.failure(error)
  } finally {
    call.end()
  }
  if (!head) throw new ApiError(502, 'The backend finished without sending a completion.', { code: 'upstream_empty' })
  return {
    id: head.id,
    object: 'chat.completion',
    created: head.created,
    model: head.model,
    choices: [...choices.entries()].sort(([a], [b]) => a - b).map(([index, parts]) => toChoice(index, parts)),
    usage,
  }
}

function addDelta(choices: Map<number, ChoiceParts>, choice: CompletionChunk['choices'][number]): void {
  let parts = choices.get(choice.index)
  if (!parts) {
    parts = { content: '', reasoning: '', logprobs: null, finishReason: null }
    choices.set(choice.index, parts)
  }
  parts.content += choice.delta?.content ?? ''
  parts.reasoning += choice.delta?.reasoning_content ?? ''
  const tokens = choice.logprobs?.content
  if (Array.isArray(tokens)) (parts.logprobs ??= []).push(...tokens)
  if (choice.finish_reason) parts.finishReason = choice.finish_reason
}

function toChoice(index: number, parts: ChoiceParts): CompletionChoice {
  const message: CompletionChoice['message'] = { role: 'assistant', content: parts.content }
  if (parts.reasoning) message.reasoning_content = parts.reasoning
  return {
    index,
    message,
    logprobs: parts.logprobs ? { content: parts.logprobs } : null,
    finish_reason: parts.finishReason,
  }
}
