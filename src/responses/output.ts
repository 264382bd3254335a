import type { ApiError } from '../errors.ts'
import type { DataChunk } from '../relay/generation.ts'
import type { Usage } from '../relay/chunk.ts'
import type { ItemStatus, MessageItem, OutputItem, ReasoningItem } from './items.ts'
import type { ResponsesRequest } from './request.ts'

// The Responses API objects the gateway answers with (the shapes of the openai SDK's
// resources/responses/responses.d.ts: Response, ResponseReasoningItem, ResponseOutputMessage,
// ResponseUsage), shared by the stream: false collector and the event stream.

export interface ResponseUsage {
  input_tokens: number
  input_tokens_details: { cached_tokens: number }
  output_tokens: number
  output_tokens_details: { reasoning_tokens: number }
  total_tokens: number
}

export type ResponseStatus = 'in_progress' | 'completed' | 'incomplete' | 'failed'

/** What a response echoes of its request, as the upstream request went (after the prompt rules). */
export interface ResponseSettings {
  id: string
  /** The conversation its ids are named in (src/responses/ids.ts). */
  conversation: string
  createdAt: number
  model: string
  request: ResponsesRequest
  temperature: number | null
  topP: number | null
  maxOutputTokens: number | null
  /** The client asked for a reasoning summary: the gateway has no summarizer, so it is the reasoning itself. */
  summary: boolean
  /**
   * Stores the finished response (src/responses/store.ts), awaited before the client is told it
   * finished, so a next turn finds it; null: not stored.
   */
  keep: ((response: FinishedResponse) => Promise<void>) | null
}

/** The response object once finished, as the store keeps it. */
export type FinishedResponse = { id: string; output: OutputItem[] } & Record<string, unknown>

export function reasoningItem(settings: ResponseSettings, id: string, text: string, status: ItemStatus): ReasoningItem {
  return {
    type: 'reasoning',
    id,
    status,
    summary: settings.summary && text !== '' ? [{ type: 'summary_text', text }] : [],
    content: text === '' && status === 'in_progress' ? [] : [{ type: 'reasoning_text', text }],
  }
}

export function messageItem(id: string, text: string, status: ItemStatus): MessageItem {
  return { type: 'message', id, role: 'assistant', status, content: [{ type: 'output_text', text, annotations: [] }] }
}

/** The whole response object at one moment of its life. */
export function responseObject(
  settings: ResponseSettings,
  state: { status: ResponseStatus; output: OutputItem[]; usage: ResponseUsage | null; error?: ApiError | null },
): FinishedResponse {
  const { request } = settings
  return {
    id: settings.id,
    object: 'response',
    created_at: settings.createdAt,
    status: state.status,
    background: false,
    error: state.error ? { code: state.error.code ?? 'server_error', message: state.error.message } : null,
    incomplete_details: state.status === 'incomplete' ? { reason: 'max_output_tokens' } : null,
    instructions: request.instructions ?? null,
    max_output_tokens: settings.maxOutputTokens,
    metadata: request.metadata ?? {},
    model: settings.model,
    output: state.output,
    parallel_tool_calls: false,
    previous_response_id: request.previous_response_id ?? null,
    reasoning: { effort: null, summary: request.reasoning?.summary ?? null },
    store: settings.keep !== null,
    temperature: settings.temperature,
    text: { format: request.text?.format ?? { type: 'text' } },
    tool_choice: 'none',
    tools: [],
    top_p: settings.topP,
    truncation: 'disabled',
    usage: state.usage,
    user: request.user ?? null,
  }
}

/**
 * Stores a finished response when the request asked to. A store that fails or does not answer
 * costs the client nothing it was sent: the answer is delivered, and a turn that continues it is
 * told the response was not found. Logged without the response (never a prompt or completion).
 */
export async function keepResponse(settings: ResponseSettings, response: FinishedResponse): Promise<void> {
  if (!settings.keep) return
  try {
    await settings.keep(response)
  } catch (error) {
    console.warn(
      JSON.stringify({ event: 'response_store_failed', response: settings.id, error: error instanceof Error ? error.name : 'unknown' }),
    )
  }
}

/**
 * Counts reasoning tokens, which vLLM's usage does not report: the gateway asks vLLM for the
 * running usage on every chunk (continuous_usage_stats), so the completion tokens counted when
 * the last reasoning text arrived are the reasoning's tokens (a chunk that also starts the answer
 * counts one token less, for the answer's first token).
 */
export class ReasoningTokens {
  count = 0
  #usage: Usage | null = null

  read(chunk: DataChunk): void {
    if (chunk.usage) this.#usage = chunk.usage
    if (chunk.kind !== 'delta') return
    const delta = chunk.chunk.choices.find((choice) => choice.index === 0)?.delta
    if (!delta?.reasoning_content || !chunk.usage) return
    this.count = Math.max(0, chunk.usage.completion_tokens - (delta.content ? 1 : 0))
  }

  /** The last usage the backend reported: the final one once the generation is over. */
  get usage(): Usage | null {
    return this.#usage
  }

  responseUsage(): ResponseUsage | null {
    const usage = this.#usage
    if (!usage) return null
    return {
      input_tokens: usage.prompt_tokens,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: usage.completion_tokens,
      output_tokens_details: { reasoning_tokens: Math.min(this.count, usage.completion_tokens) },
      total_tokens: usage.total_tokens,
    }
  }
}

/** The first choice's reasoning and answer text of a chunk. */
export function textsOf(chunk: DataChunk): { reasoning: string; content: string } {
  if (chunk.kind !== 'delta') return { reasoning: '', content: '' }
  const delta = chunk.chunk.choices.find((choice) => choice.index === 0)?.delta
  return { reasoning: delta?.reasoning_content ?? '', content: delta?.content ?? '' }
}
