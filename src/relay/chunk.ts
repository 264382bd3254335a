import type { ContentfulStatusCode } from 'hono/utils/http-status'
import { ApiError } from '../errors.ts'
import { ThinkSplitter } from './think-split.ts'

// What one upstream `data:` payload means to the relay. Each payload is parsed once; it is
// re-serialized only when its reasoning field has to be renamed, otherwise its bytes go on as sent.

export interface Usage {
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
}

export interface ChunkDelta {
  role?: string
  content?: string | null
  reasoning_content?: string | null
  reasoning?: string | null
}

export interface ChunkChoice {
  index: number
  delta: ChunkDelta
  finish_reason?: string | null
  logprobs?: { content?: unknown[] | null } | null
}

export interface CompletionChunk {
  id: string
  object: string
  created: number
  model: string
  choices: ChunkChoice[]
  usage?: Usage | null
}

export type UpstreamChunk =
  | { kind: 'done' }
  | { kind: 'error'; error: ApiError }
  /** The usage-only chunk (`choices: []`) that include_usage adds after the finish chunk. */
  | { kind: 'usage'; data: string; usage: Usage }
  /** A chunk with choices; `usage` is set when the backend sends usage on every chunk. */
  | { kind: 'delta'; data: string; chunk: CompletionChunk; usage: Usage | null }

export interface ChunkReaderOptions {
  /**
   * false removes the running `usage` the gateway asks vLLM to put on every chunk
   * (continuous_usage_stats, so it knows the tokens used by a stream that ends early) from what
   * goes on to a client that did not ask for it.
   */
  keepChunkUsage?: boolean
  /** The backend runs without `--reasoning-parser`: its reasoning arrives inside `content`. */
  reasoningInContent?: boolean
}

/**
 * Reads the payloads of one upstream stream, in order. Each payload is parsed once and
 * re-serialized only when it has to change (a renamed reasoning field, removed usage, split
 * reasoning); otherwise its bytes go on as sent. It keeps state only for `reasoningInContent`.
 */
export class ChunkReader {
  #keepChunkUsage: boolean
  #splitters: Map<number, ThinkSplitter> | null

  constructor(options: ChunkReaderOptions = {}) {
    this.#keepChunkUsage = options.keepChunkUsage ?? true
    this.#splitters = options.reasoningInContent ? new Map() : null
  }

  read(data: string): UpstreamChunk {
    if (data === '[DONE]') return { kind: 'done' }
    const chunk = parseJson(data)
    if ('error' in chunk) return { kind: 'error', error: upstreamStreamError(chunk.error) }
    if (!Array.isArray(chunk.choices)) throw malformed()
    const completion = chunk as unknown as CompletionChunk
    if (completion.choices.length === 0 && completion.usage) {
      return { kind: 'usage', data, usage: completion.usage }
    }
    let changed = false
    for (const choice of completion.choices) {
      if (!choice.delta) continue
      if (useStableReasoningField(choice.delta)) changed = true
      if (this.#splitters && this.#splitReasoning(choice)) changed = true
    }
    const usage = completion.usage ?? null
    if (usage !== null && !this.#keepChunkUsage) {
      delete completion.usage
      const cut = changed ? null : withoutTrailingUsage(data)
      if (cut !== null) return { kind: 'delta', data: cut, chunk: completion, usage }
      changed = true
    }
    return { kind: 'delta', data: changed ? JSON.stringify(completion) : data, chunk: completion, usage }
  }

  /** Moves the reasoning part of a no-parser content delta to reasoning_content. */
  #splitReasoning(choice: ChunkChoice): boolean {
    const { delta } = choice
    const splitters = this.#splitters as Map<number, ThinkSplitter>
    let splitter = splitters.get(choice.index)
    if (!splitter) splitters.set(choice.index, (splitter = new ThinkSplitter()))
    if (typeof delta.content !== 'string' && !choice.finish_reason) return false
    const parts = splitter.split(delta.content ?? '')
    if (choice.finish_reason) parts.reasoning += splitter.flush()
    if (parts.reasoning === '' && parts.content === delta.content) return false
    // Content before reasoning_content: DeltaMessage's field order, as vLLM's parser sends it.
    delete delta.content
    delete delta.reasoning_content
    if (parts.content !== '' || parts.reasoning === '') delta.content = parts.content
    if (parts.reasoning !== '') delta.reasoning_content = parts.reasoning
    return true
  }
}

const USAGE_FIELD = ',"usage":{'

/**
 * vLLM serializes `usage` last, as a flat object: `...,"usage":{"prompt_tokens":9,...}}`. Cutting
 * that tail is much cheaper than re-serializing the chunk; anything else returns null.
 */
function withoutTrailingUsage(data: string): string | null {
  const at = data.lastIndexOf(USAGE_FIELD)
  if (at < 0) return null
  const close = data.indexOf('}', at)
  const flat = close === data.length - 2 && data.endsWith('}}') && data.indexOf('{', at + USAGE_FIELD.length) === -1
  return flat ? `${data.slice(0, at)}}` : null
}

/**
 * vLLM names the reasoning text `reasoning_content` (v0.7.2 to late 2025), both names with
 * `reasoning_content: null` on non-reasoning deltas (late 2025), or `reasoning` (2026 builds).
 * Clients always get `reasoning_content`, as DeepSeek's own API names it, and only when there is
 * reasoning text. Returns whether the delta changed.
 */
export function useStableReasoningField(delta: ChunkDelta): boolean {
  if (!('reasoning' in delta) && delta.reasoning_content !== null) return false
  const text = delta.reasoning_content ?? delta.reasoning
  delete delta.reasoning
  delete delta.reasoning_content
  if (typeof text === 'string') delta.reasoning_content = text
  return true
}

/** True when the delta carries model output (reasoning or answer text), not just the role. */
export function hasToken(delta: ChunkDelta | undefined): boolean {
  return !!delta && (!!delta.content || !!delta.reasoning_content)
}

/** Whether a chunk carries model output: the first such chunk is the first token. */
export function carriesToken(chunk: UpstreamChunk): boolean {
  return chunk.kind === 'delta' && chunk.chunk.choices.some((choice) => hasToken(choice.delta))
}

function parseJson(data: string): Record<string, unknown> {
  let value: unknown
  try {
    value = JSON.parse(data)
  } catch {
    throw malformed()
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw malformed()
  return value as Record<string, unknown>
}

function malformed(): ApiError {
  return new ApiError(502, 'The backend sent a malformed event.', { code: 'upstream_malformed_event' })
}

/** EngineDeadError's message (vllm/v1/engine/exceptions.py, v0.11.0). */
const ENGINE_DEAD_MESSAGE = 'EngineCore encountered an issue. See stack trace (above) for the root cause.'
/** OutputProcessor.add_request (vllm/v1/engine/output_processor.py): an id already in flight. */
const REQUEST_ID_RUNNING = /^Request id \S.* already running\.?$/

/**
 * Whether an in-stream error is the backend's failure rather than the request's. vLLM v0.11.0
 * sends every exception of its stream generator as a 400 BadRequestError event
 * (serving_chat.py, chat_completion_stream_generator; serving_engine.py,
 * create_streaming_error_response), so the code alone says nothing. What reaches that handler
 * comes out of AsyncLLM.generate (vllm/v1/engine/async_llm.py), which lets through exactly three
 * kinds: EngineDeadError (a fixed message), ValueError (the request failed validation: its own
 * fault, message varies), and anything else re-raised as EngineGenerateError() (no message).
 * Later builds and other servers give a 5xx code to engine failures, which also counts.
 */
export function isBackendFault(code: number, message: string): boolean {
  if (code >= 500 || code === 429) return true
  return message === ENGINE_DEAD_MESSAGE || message.trim() === '' || REQUEST_ID_RUNNING.test(message)
}

/**
 * vLLM's in-stream `{"error": {...}}` as an ApiError, keeping its message. A backend fault is a
 * 502 (failover may replace it, the circuit counts it); the request's own fault keeps vLLM's 4xx.
 */
function upstreamStreamError(body: unknown): ApiError {
  const fields = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>
  const code = typeof fields.code === 'number' && fields.code >= 400 && fields.code <= 599 ? fields.code : 502
  const sent = typeof fields.message === 'string' ? fields.message : ''
  if (isBackendFault(code, sent)) {
    const message = sent.trim() === '' ? 'The backend failed while generating.' : sent
    return new ApiError(code === 429 || code === 503 ? code : 502, message, { code: 'upstream_error' })
  }
  return new ApiError(code as ContentfulStatusCode, sent || 'The backend refused the request.', { code: 'upstream_error' })
}
