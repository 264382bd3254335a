// The chat path's output made Anthropic, as vLLM v0.20.2 does it in
// vllm/entrypoints/anthropic/serving.py: messages_full_converter (a ChatCompletionResponse) and
// message_stream_converter (the chat stream generator's `data: ...` strings, one at a time).
// Bodies are built with keys in the pydantic models' declaration order (protocol.py), so
// JSON.stringify gives model_dump_json's compact bytes.

import { randomUUID } from 'node:crypto'
import type { Json } from './errors.ts'
import { pyReprJson } from './anthropic-to-chat.ts'
import { isDict, type Dict } from './pydantic.ts'

type JsonObject = { [key: string]: Json }

/** AnthropicServingMessages.stop_reason_map (and the same three branches in messages_full_converter). */
const STOP_REASONS: Record<string, string> = { stop: 'end_turn', length: 'max_tokens', tool_calls: 'tool_use' }

/** uuid.uuid4().hex: a thinking block's signature. */
function signature(): string {
  return randomUUID().replace(/-/g, '')
}

/**
 * The text a chunk or message carries as reasoning. v0.20.2's DeltaMessage / ChatMessage have only
 * `reasoning`; an emulator configured for an older era names it `reasoning_content`, read here as
 * the same field so the route shows the chat path's reasoning whatever that era.
 */
function reasoningOf(message: Dict): string | null {
  const value = message.reasoning ?? message.reasoning_content
  return typeof value === 'string' ? value : null
}

function number(value: unknown): number {
  return typeof value === 'number' ? value : 0
}

/**
 * messages_full_converter, dumped with exclude_none (api_router.py create_messages): no
 * stop_sequence, no kv_transfer_params, no cache token counts; stop_reason only when mapped.
 */
export function messagesResponse(chat: Dict): JsonObject {
  const choices = Array.isArray(chat.choices) ? (chat.choices as unknown[]) : []
  const choice = isDict(choices[0]) ? choices[0] : {}
  const message = isDict(choice.message) ? choice.message : {}
  const usage = isDict(chat.usage) ? chat.usage : {}
  const content: JsonObject[] = []
  const reasoning = reasoningOf(message)
  if (reasoning) content.push({ type: 'thinking', thinking: reasoning, signature: signature() })
  if (typeof message.content === 'string' && message.content) content.push({ type: 'text', text: message.content })
  for (const call of Array.isArray(message.tool_calls) ? (message.tool_calls as unknown[]) : []) {
    if (!isDict(call) || !isDict(call.function)) continue
    const args = typeof call.function.arguments === 'string' ? call.function.arguments : '{}'
    content.push({ type: 'tool_use', id: call.id as Json, name: call.function.name as Json, input: JSON.parse(args) as Json })
  }
  const body: JsonObject = { id: chat.id as Json, type: 'message', role: 'assistant', content, model: chat.model as Json }
  const stopReason = typeof choice.finish_reason === 'string' ? STOP_REASONS[choice.finish_reason] : undefined
  if (stopReason !== undefined) body.stop_reason = stopReason
  body.usage = { input_tokens: number(usage.prompt_tokens), output_tokens: number(usage.completion_tokens) }
  if (isDict(chat.kv_transfer_params)) body.kv_transfer_params = chat.kv_transfer_params as Json
  return body
}

/** wrap_data_with_event. */
function event(name: string, data: JsonObject): string {
  return `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`
}

/** An `event: error` as the converter's except clause (and its "Invalid data format" branch) sends it. */
export function errorEvent(message: string): string {
  return event('error', { type: 'error', error: { type: 'internal_error', message } })
}

/**
 * The pydantic version in the doc links of validation errors ("https://errors.pydantic.dev/2.13/v/...").
 * v0.20.2 asks for pydantic >= 2.12 (requirements/common.txt); 2.13 is the release a fresh install gets.
 */
const PYDANTIC_DOCS = 'https://errors.pydantic.dev/2.13/v'

/** pydantic-core's input_value: a repr longer than 50 characters keeps its first 25 and last 24. */
function inputValue(repr: string): string {
  const chars = Array.from(repr)
  return chars.length > 50 ? `${chars.slice(0, 25).join('')}...${chars.slice(-24).join('')}` : repr
}

/** Where a JSON text cut short ends, as serde_json reports it: line and column (1-based, in characters). */
function endPosition(text: string): { line: number; column: number } {
  const lines = text.split('\n')
  return { line: lines.length, column: Array.from(lines.at(-1) ?? '').length }
}

/** True when `text` ends inside a JSON string (an odd number of unescaped quotes). */
function endsInString(text: string): boolean {
  let inString = false
  for (let index = 0; index < text.length; index++) {
    const char = text[index]
    if (inString && char === '\\') index += 1
    else if (char === '"') inString = !inString
  }
  return inString
}

/**
 * ChatCompletionStreamResponse.model_validate_json(data): the parsed chunk, or the str() of the
 * ValidationError it raises. The chat path's own error event ({"error": ...}) has neither `model`
 * nor `choices`, which are required; a cut-off chunk is invalid JSON.
 */
export function validateChunk(data: string): { ok: true; chunk: Dict } | { ok: false; message: string } {
  const title = (count: number) => `${count} validation error${count === 1 ? '' : 's'} for ChatCompletionStreamResponse`
  let parsed: unknown
  try {
    parsed = JSON.parse(data)
  } catch {
    const { line, column } = endPosition(data)
    const what = endsInString(data) ? 'a string' : 'a value'
    return {
      ok: false,
      message:
        `${title(1)}\n  Invalid JSON: EOF while parsing ${what} at line ${line} column ${column} ` +
        `[type=json_invalid, input_value=${inputValue(pyReprJson(data))}, input_type=str]\n` +
        `    For further information visit ${PYDANTIC_DOCS}/json_invalid`,
    }
  }
  if (!isDict(parsed)) {
    return {
      ok: false,
      message:
        `${title(1)}\n  Input should be an object [type=model_type, input_value=${inputValue(pyReprJson(parsed as Json))}, ` +
        `input_type=${Array.isArray(parsed) ? 'list' : typeof parsed === 'string' ? 'str' : 'int'}]\n` +
        `    For further information visit ${PYDANTIC_DOCS}/model_type`,
    }
  }
  const missing = ['model', 'choices'].filter((field) => !(field in parsed))
  if (missing.length === 0) return { ok: true, chunk: parsed }
  const value = inputValue(pyReprJson(parsed as Json))
  const lines = missing.map(
    (field) =>
      `${field}\n  Field required [type=missing, input_value=${value}, input_type=dict]\n    For further information visit ${PYDANTIC_DOCS}/missing`,
  )
  return { ok: false, message: `${title(missing.length)}\n${lines.join('\n')}` }
}

/**
 * message_stream_converter: fed the chat stream's events one by one, returns what to send for
 * each, and `ended` once the converter's generator is over (an error event ends it: no
 * message_stop follows).
 */
export class MessageStreamConverter {
  private firstItem = true
  private finishReason: string | null = null
  private contentBlockIndex = 0
  private blockType: string | null = null
  private blockIndex: number | null = null
  private blockSignature: string | null = null
  private signatureEmitted = false
  private toolUseId: string | null = null
  private readonly toolIndexToId = new Map<number, string>()
  ended = false

  /** One item of the chat stream generator (`data: ...\n\n`). */
  convert(item: string): string[] {
    if (this.ended) return []
    if (!item.startsWith('data:')) return [errorEvent('Invalid data format received')]
    const data = item.slice(5).trim()
    if (data === '[DONE]') return [event('message_stop', { type: 'message_stop' })]
    const validated = validateChunk(data)
    if (!validated.ok) {
      this.ended = true
      return [errorEvent(validated.message)]
    }
    return this.chunk(validated.chunk)
  }

  private chunk(chunk: Dict): string[] {
    const usage = isDict(chunk.usage) ? chunk.usage : null
    if (this.firstItem) {
      // message_start from the role chunk: AnthropicMessagesResponse with only the fields set, so
      // neither `type` nor `role` (defaults) and no kv_transfer_params (exclude_unset).
      this.firstItem = false
      const message: JsonObject = {
        id: chunk.id as Json,
        content: [],
        model: chunk.model as Json,
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: usage ? number(usage.prompt_tokens) : 0, output_tokens: 0 },
      }
      return [event('message_start', { type: 'message_start', message })]
    }
    const choices = Array.isArray(chunk.choices) ? (chunk.choices as unknown[]) : []
    if (choices.length === 0) {
      // The include_usage chunk: close the open block, then message_delta.
      const stopReason = STOP_REASONS[this.finishReason ?? 'stop'] ?? null
      return [
        ...this.stopActiveBlock(),
        event('message_delta', {
          type: 'message_delta',
          delta: { stop_reason: stopReason },
          usage: { input_tokens: usage ? number(usage.prompt_tokens) : 0, output_tokens: usage ? number(usage.completion_tokens) : 0 },
        }),
      ]
    }
    const choice = isDict(choices[0]) ? choices[0] : {}
    if (typeof choice.finish_reason === 'string') this.finishReason = choice.finish_reason
    const delta = isDict(choice.delta) ? choice.delta : {}
    const out: string[] = []
    const reasoning = reasoningOf(delta)
    if (reasoning) out.push(...this.blockDelta('thinking', { type: 'thinking_delta', thinking: reasoning }))
    if (typeof delta.content === 'string' && delta.content !== '') {
      out.push(...this.blockDelta('text', { type: 'text_delta', text: delta.content }))
    }
    if (Array.isArray(delta.tool_calls)) out.push(...this.toolCalls(delta.tool_calls as unknown[]))
    return out
  }

  /** A delta into a block of `type`, opening that block first when another one is open. */
  private blockDelta(type: 'thinking' | 'text', delta: JsonObject): string[] {
    const out: string[] = []
    if (this.blockType !== type) {
      out.push(...this.stopActiveBlock())
      out.push(this.startBlock(type === 'thinking' ? { type: 'thinking', thinking: '' } : { type: 'text', text: '' }))
    }
    out.push(this.deltaEvent(delta))
    return out
  }

  private deltaEvent(delta: JsonObject): string {
    const index = this.blockIndex ?? this.contentBlockIndex
    return event('content_block_delta', { type: 'content_block_delta', delta, index })
  }

  private toolCalls(calls: readonly unknown[]): string[] {
    const out: string[] = []
    for (const call of calls) {
      if (!isDict(call)) continue
      const fn = isDict(call.function) ? call.function : null
      const args = fn !== null && typeof fn.arguments === 'string' && fn.arguments !== '' ? fn.arguments : null
      if (typeof call.id === 'string') {
        this.toolIndexToId.set(number(call.index), call.id)
        const name = fn !== null && typeof fn.name === 'string' ? fn.name : null
        if (this.toolUseId !== call.id && name !== null) {
          out.push(...this.stopActiveBlock())
          out.push(this.startBlock({ type: 'tool_use', id: call.id, name, input: {} }))
        }
        if (args !== null && this.toolUseId === call.id) out.push(this.deltaEvent({ type: 'input_json_delta', partial_json: args }))
      } else {
        const id = this.toolIndexToId.get(number(call.index))
        if (id !== undefined && args !== null && this.toolUseId === id) {
          out.push(this.deltaEvent({ type: 'input_json_delta', partial_json: args }))
        }
      }
    }
    return out
  }

  private startBlock(block: JsonObject): string {
    const data = event('content_block_start', { type: 'content_block_start', content_block: block, index: this.contentBlockIndex })
    this.blockType = block.type as string
    this.blockIndex = this.contentBlockIndex
    this.blockSignature = block.type === 'thinking' ? signature() : null
    this.signatureEmitted = block.type !== 'thinking'
    this.toolUseId = block.type === 'tool_use' ? (block.id as string) : null
    return data
  }

  /** stop_active_block: a thinking block gets its signature_delta just before its content_block_stop. */
  private stopActiveBlock(): string[] {
    if (this.blockType === null) return []
    const out: string[] = []
    if (this.blockType === 'thinking' && this.blockSignature !== null && !this.signatureEmitted) {
      out.push(this.deltaEvent({ type: 'signature_delta', signature: this.blockSignature }))
      this.signatureEmitted = true
    }
    out.push(event('content_block_stop', { type: 'content_block_stop', index: this.blockIndex }))
    this.blockType = null
    this.blockIndex = null
    this.blockSignature = null
    this.signatureEmitted = false
    this.toolUseId = null
    this.contentBlockIndex += 1
    return out
  }
}
