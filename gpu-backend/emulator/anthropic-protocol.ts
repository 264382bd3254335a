// vLLM v0.20.2's Anthropic request models and their conversion to a chat completion request:
// vllm/entrypoints/anthropic/protocol.py (AnthropicMessagesRequest, AnthropicCountTokensRequest,
// pydantic with the default extra="ignore", so unknown fields such as `thinking` are dropped) and
// vllm/entrypoints/anthropic/serving.py AnthropicServingMessages._convert_anthropic_to_openai_request.

import { pythonJsonDumps, type Json } from './errors.ts'
import {
  isDict,
  readBool,
  readDict,
  readFloat,
  readInt,
  readString,
  type Dict,
  type Loc,
  type PydanticError,
  type Read,
} from './pydantic.ts'

const BLOCK_TYPES = ['text', 'image', 'tool_use', 'tool_result', 'thinking', 'redacted_thinking'] as const
const TOOL_CHOICE_TYPES = ['auto', 'any', 'tool', 'none'] as const

/** AnthropicContentBlock: the fields the conversion reads. */
export type AnthropicBlock = {
  type: (typeof BLOCK_TYPES)[number]
  text: string | null
  source: Dict | null
  id: string | null
  tool_use_id: string | null
  name: string | null
  input: Dict | null
  content: string | Dict[] | null
  thinking: string | null
}

export type AnthropicMessage = { role: 'user' | 'assistant'; content: string | AnthropicBlock[] }
type Tool = { name: string; description: string | null; input_schema: Dict }
type ToolChoice = { type: (typeof TOOL_CHOICE_TYPES)[number]; name: string | null }

/** AnthropicCountTokensRequest. */
export type CountTokensRequest = {
  model: string
  messages: AnthropicMessage[]
  system: string | AnthropicBlock[] | null
  tool_choice: ToolChoice | null
  tools: Tool[] | null
  chat_template_kwargs: Dict | null
}

/** AnthropicMessagesRequest. */
export type MessagesRequest = CountTokensRequest & {
  max_tokens: number
  stop_sequences: string[] | null
  stream: boolean
  temperature: number | null
  top_k: number | null
  top_p: number | null
  kv_transfer_params: Dict | null
}

export type Validated<T> = { ok: true; request: T } | { ok: false; errors: PydanticError[] }

/** Collects a model's errors in its fields' declaration order, as pydantic reports them. */
class Reader {
  readonly errors: PydanticError[] = []

  /** A field that may be absent or null (`X | None = None`). */
  optional<T>(body: Dict, field: string, loc: Loc, read: (value: unknown, loc: Loc) => Read<T>): T | null {
    const value = body[field]
    if (value === undefined || value === null) return null
    return this.take(read(value, [...loc, field]))
  }

  /** A field without a default: absent is "Field required" (null fails its type check). */
  required<T>(body: Dict, field: string, loc: Loc, read: (value: unknown, loc: Loc) => Read<T>): T | null {
    if (!(field in body)) {
      this.errors.push({ type: 'missing', loc: [...loc, field], msg: 'Field required' })
      return null
    }
    return this.take(read(body[field], [...loc, field]))
  }

  take<T>(result: Read<T>): T | null {
    if (result.ok) return result.value
    this.errors.push(result.error)
    return null
  }
}

const fail = (type: string, loc: Loc, msg: string): Read<never> => ({ ok: false, error: { type, loc, msg } })

function literal<T extends string>(choices: readonly T[]): (value: unknown, loc: Loc) => Read<T> {
  const quoted = choices.map((choice) => `'${choice}'`)
  const msg = `Input should be ${quoted.slice(0, -1).join(', ')} or ${quoted.at(-1)}`
  return (value, loc) => (choices.includes(value as T) ? { ok: true, value: value as T } : fail('literal_error', loc, msg))
}

function modelType(value: unknown, loc: Loc, model: string): Read<Dict> {
  return isDict(value) ? { ok: true, value } : fail('model_type', loc, `Input should be a valid dictionary or instance of ${model}`)
}

/** list[X]: each item read at its index. */
type Item<T> = (reader: Reader, value: unknown, loc: Loc) => T | null

function listOf<T>(reader: Reader, value: unknown, loc: Loc, item: Item<T>): T[] | null {
  if (!Array.isArray(value)) return reader.take(fail('list_type', loc, 'Input should be a valid list'))
  const before = reader.errors.length
  const items = (value as unknown[]).map((entry, index) => item(reader, entry, [...loc, index]))
  return reader.errors.length === before ? (items as T[]) : null
}

/**
 * `str | list[X]`: pydantic's smart union tries both members; when neither fits it reports both,
 * each under the member's name ('str', then 'list[X]').
 */
function strOrList<T>(reader: Reader, value: unknown, loc: Loc, listName: string, item: Item<T>): string | T[] | null {
  if (typeof value === 'string') return value
  const inner = new Reader()
  const list = listOf(inner, value, [...loc, listName], item)
  if (inner.errors.length === 0) return list
  reader.errors.push({ type: 'string_type', loc: [...loc, 'str'], msg: 'Input should be a valid string' }, ...inner.errors)
  return null
}

/** AnthropicContentBlock, field by field in declaration order. */
function readBlock(reader: Reader, value: unknown, loc: Loc): AnthropicBlock | null {
  const dict = reader.take(modelType(value, loc, 'AnthropicContentBlock'))
  if (dict === null) return null
  const before = reader.errors.length
  const type = reader.required(dict, 'type', loc, literal(BLOCK_TYPES))
  const text = reader.optional(dict, 'text', loc, readString)
  const source = reader.optional(dict, 'source', loc, readDict)
  const id = reader.optional(dict, 'id', loc, readString)
  const toolUseId = reader.optional(dict, 'tool_use_id', loc, readString)
  const name = reader.optional(dict, 'name', loc, readString)
  const input = reader.optional(dict, 'input', loc, readDict)
  const rawContent = dict.content
  const content =
    rawContent === undefined || rawContent === null
      ? null
      : strOrList(reader, rawContent, [...loc, 'content'], 'list[dict[str,any]]', (inner, item, at) => inner.take(readDict(item, at)))
  reader.optional(dict, 'is_error', loc, readBool)
  const thinking = reader.optional(dict, 'thinking', loc, readString)
  reader.optional(dict, 'signature', loc, readString)
  reader.optional(dict, 'data', loc, readString)
  if (reader.errors.length !== before || type === null) return null
  return { type, text, source, id, tool_use_id: toolUseId, name, input, content, thinking }
}

function blockList(reader: Reader, value: unknown, loc: Loc): string | AnthropicBlock[] | null {
  return strOrList(reader, value, loc, 'list[AnthropicContentBlock]', readBlock)
}

function readMessage(reader: Reader, value: unknown, loc: Loc): AnthropicMessage | null {
  const dict = reader.take(modelType(value, loc, 'AnthropicMessage'))
  if (dict === null) return null
  const role = reader.required(dict, 'role', loc, literal(['user', 'assistant'] as const))
  let content: string | AnthropicBlock[] | null = null
  if (!('content' in dict)) reader.errors.push({ type: 'missing', loc: [...loc, 'content'], msg: 'Field required' })
  else content = blockList(reader, dict.content, [...loc, 'content'])
  return role === null || content === null ? null : { role, content }
}

function readTool(reader: Reader, value: unknown, loc: Loc): Tool | null {
  const dict = reader.take(modelType(value, loc, 'AnthropicTool'))
  if (dict === null) return null
  const name = reader.required(dict, 'name', loc, readString)
  const description = reader.optional(dict, 'description', loc, readString)
  const schema = reader.required(dict, 'input_schema', loc, readDict)
  if (name === null || schema === null) return null
  // validate_input_schema: a schema without "type" gets "object".
  return { name, description, input_schema: 'type' in schema ? schema : { ...schema, type: 'object' } }
}

function readToolChoice(reader: Reader, value: unknown, loc: Loc): ToolChoice | null {
  const dict = reader.take(modelType(value, loc, 'AnthropicToolChoice'))
  if (dict === null) return null
  const type = reader.required(dict, 'type', loc, literal(TOOL_CHOICE_TYPES))
  const name = reader.optional(dict, 'name', loc, readString)
  if (type === null) return null
  // validate_name_required_for_tool (mode="after"): reported at the tool_choice itself.
  if (type === 'tool' && !name) {
    reader.errors.push({ type: 'value_error', loc, msg: "Value error, tool_choice.name is required when type is 'tool'" })
    return null
  }
  return { type, name }
}

/** The fields both request models share, in AnthropicMessagesRequest's declaration order around them. */
function readCommon(reader: Reader, body: Dict, loc: Loc, between: () => void, afterSystem: () => void): CountTokensRequest {
  const model = reader.required(body, 'model', loc, readString)
  // validate_model: an empty name is refused.
  if (model === '') reader.errors.push({ type: 'value_error', loc: [...loc, 'model'], msg: 'Value error, Model is required' })
  const messages = reader.required(body, 'messages', loc, (value, at) => {
    const list = listOf(reader, value, at, readMessage)
    return { ok: true, value: list }
  })
  between()
  const system = body.system === undefined || body.system === null ? null : blockList(reader, body.system, [...loc, 'system'])
  afterSystem()
  const toolChoice =
    body.tool_choice === undefined || body.tool_choice === null ? null : readToolChoice(reader, body.tool_choice, [...loc, 'tool_choice'])
  const tools = reader.optional(body, 'tools', loc, (value, at) => ({
    ok: true,
    value: listOf(reader, value, at, readTool),
  }))
  return { model: model ?? '', messages: messages ?? [], system, tool_choice: toolChoice, tools, chat_template_kwargs: null }
}

function notADict(): PydanticError[] {
  return [{ type: 'model_attributes_type', loc: ['body'], msg: 'Input should be a valid dictionary or object to extract fields from' }]
}

/** AnthropicMessagesRequest.model_validate, with FastAPI's ('body', ...) locations. */
export function validateMessagesRequest(body: unknown): Validated<MessagesRequest> {
  if (!isDict(body)) return { ok: false, errors: notADict() }
  const reader = new Reader()
  const loc: Loc = ['body']
  let maxTokens: number | null = null
  let stopSequences: string[] | null = null
  let stream: boolean | null = null
  let temperature: number | null = null
  const common = readCommon(
    reader,
    body,
    loc,
    () => {
      maxTokens = reader.required(body, 'max_tokens', loc, readInt)
      // validate_max_tokens
      if (maxTokens !== null && maxTokens <= 0) {
        reader.errors.push({ type: 'value_error', loc: [...loc, 'max_tokens'], msg: 'Value error, max_tokens must be positive' })
      }
      reader.optional(body, 'metadata', loc, readDict)
      stopSequences = reader.optional(body, 'stop_sequences', loc, (value, at) => ({
        ok: true,
        value: listOf(reader, value, at, (inner, item, itemLoc) => inner.take(readString(item, itemLoc))),
      }))
      stream = reader.optional(body, 'stream', loc, readBool)
    },
    () => {
      temperature = reader.optional(body, 'temperature', loc, readFloat)
    },
  )
  const topK = reader.optional(body, 'top_k', loc, readInt)
  const topP = reader.optional(body, 'top_p', loc, readFloat)
  const kvTransferParams = reader.optional(body, 'kv_transfer_params', loc, readDict)
  const chatTemplateKwargs = reader.optional(body, 'chat_template_kwargs', loc, readDict)
  if (reader.errors.length > 0) return { ok: false, errors: reader.errors }
  return {
    ok: true,
    request: {
      ...common,
      chat_template_kwargs: chatTemplateKwargs,
      max_tokens: maxTokens ?? 0,
      stop_sequences: stopSequences,
      stream: stream ?? false,
      temperature,
      top_k: topK,
      top_p: topP,
      kv_transfer_params: kvTransferParams,
    },
  }
}

/** AnthropicCountTokensRequest.model_validate (no max_tokens: count_tokens needs none). */
export function validateCountTokensRequest(body: unknown): Validated<CountTokensRequest> {
  if (!isDict(body)) return { ok: false, errors: notADict() }
  const reader = new Reader()
  const loc: Loc = ['body']
  const common = readCommon(
    reader,
    body,
    loc,
    () => {},
    () => {},
  )
  const chatTemplateKwargs = reader.optional(body, 'chat_template_kwargs', loc, readDict)
  if (reader.errors.length > 0) return { ok: false, errors: reader.errors }
  return { ok: true, request: { ...common, chat_template_kwargs: chatTemplateKwargs } }
}

// ---- serving.py _convert_anthropic_to_openai_request ----

type ChatMessage = { [key: string]: Json }

/** _convert_image_source_to_url: a url source as it is, anything else as a base64 data URI. */
function imageUrl(source: Dict): string {
  if (source.type === 'url') return typeof source.url === 'string' ? source.url : ''
  const mediaType = typeof source.media_type === 'string' ? source.media_type : 'image/jpeg'
  const data = typeof source.data === 'string' ? source.data : ''
  return `data:${mediaType};base64,${data}`
}

/** Python's str() of a block's tool_result content (a str, or a list of dicts printed as Python). */
function pyStr(value: string | Dict[]): string {
  if (typeof value === 'string') return value
  return pyReprJson(value as Json)
}

/** Python's repr of a JSON value (dicts, lists, str, None, True/False, numbers). */
export function pyReprJson(value: Json): string {
  if (value === null) return 'None'
  if (typeof value === 'boolean') return value ? 'True' : 'False'
  if (typeof value === 'number') return Number.isInteger(value) ? String(value) : String(value)
  if (typeof value === 'string') {
    const quote = value.includes("'") && !value.includes('"') ? '"' : "'"
    const body = value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/\r/g, '\\r').replace(/\t/g, '\\t')
    return quote + (quote === "'" ? body.replace(/'/g, "\\'") : body) + quote
  }
  if (Array.isArray(value)) return `[${value.map(pyReprJson).join(', ')}]`
  return `{${Object.entries(value)
    .map(([key, member]) => `${pyReprJson(key)}: ${pyReprJson(member)}`)
    .join(', ')}}`
}

/** _convert_user_tool_result: a `tool` message, then a user message with the result's images. */
function userToolResult(block: AnthropicBlock, out: ChatMessage[]): void {
  let text = ''
  const images: string[] = []
  if (typeof block.content === 'string') text = block.content
  else if (Array.isArray(block.content)) {
    const parts: string[] = []
    for (const item of block.content) {
      if (item.type === 'text') parts.push(typeof item.text === 'string' ? item.text : '')
      else if (item.type === 'image') {
        const url = imageUrl(isDict(item.source) ? item.source : {})
        if (url) images.push(url)
      }
    }
    text = parts.join('\n')
  }
  out.push({ role: 'tool', tool_call_id: block.tool_use_id ?? '', content: text })
  if (images.length > 0) out.push({ role: 'user', content: images.map((url) => ({ type: 'image_url', image_url: { url } })) })
}

/** _convert_messages / _convert_message_content / _convert_block. */
function convertMessages(messages: readonly AnthropicMessage[], out: ChatMessage[]): void {
  for (const message of messages) {
    const chat: ChatMessage = { role: message.role }
    if (typeof message.content === 'string') chat.content = message.content
    else {
      const parts: { [key: string]: Json }[] = []
      const toolCalls: Json[] = []
      const reasoning: string[] = []
      for (const block of message.content as AnthropicBlock[]) {
        if (block.type === 'text' && block.text) parts.push({ type: 'text', text: block.text })
        else if (block.type === 'image' && block.source) parts.push({ type: 'image_url', image_url: { url: imageUrl(block.source) } })
        else if (block.type === 'thinking' && block.thinking !== null) reasoning.push(block.thinking)
        else if (block.type === 'tool_use') {
          toolCalls.push({
            // `block.id or f"call_{int(time.time())}"`
            id: block.id || `call_${Math.floor(Date.now() / 1000)}`,
            type: 'function',
            function: { name: block.name ?? '', arguments: pythonJsonDumps((block.input ?? {}) as Json) },
          })
        } else if (block.type === 'tool_result') {
          if (message.role === 'user') userToolResult(block, out)
          else parts.push({ type: 'text', text: `Tool result: ${block.content ? pyStr(block.content) : ''}` })
        }
        // redacted_thinking is skipped: its data is opaque.
      }
      if (reasoning.length > 0) chat.reasoning = reasoning.join('')
      if (toolCalls.length > 0) chat.tool_calls = toolCalls
      if (parts.length > 0) chat.content = parts.length === 1 && parts[0]?.type === 'text' ? (parts[0].text ?? '') : parts
    }
    // A user message left without content (only tool results) is not sent.
    if (!(message.role === 'user' && !('content' in chat))) out.push(chat)
  }
}

/** _convert_system_message: a string as it is; text blocks joined, Claude Code's billing header dropped. */
function convertSystem(system: string | AnthropicBlock[] | null, out: ChatMessage[]): void {
  if (!system) return
  if (typeof system === 'string') {
    out.push({ role: 'system', content: system })
    return
  }
  let prompt = ''
  for (const block of system) {
    if (block.type === 'text' && block.text && !block.text.startsWith('x-anthropic-billing-header')) prompt += block.text
  }
  out.push({ role: 'system', content: prompt })
}

function isMessagesRequest(request: CountTokensRequest | MessagesRequest): request is MessagesRequest {
  return 'max_tokens' in request
}

/**
 * The ChatCompletionRequest the Anthropic request becomes, as the chat route's JSON body.
 * None values are left out: ChatCompletionRequest treats an explicit None as its default here.
 */
export function toChatRequest(request: CountTokensRequest | MessagesRequest): { [key: string]: Json } {
  const messages: ChatMessage[] = []
  convertSystem(request.system, messages)
  convertMessages(request.messages, messages)
  const chat: { [key: string]: Json } = { model: request.model, messages }
  if (isMessagesRequest(request)) {
    // _build_base_request: max_tokens is both max_tokens and max_completion_tokens.
    chat.max_tokens = request.max_tokens
    chat.max_completion_tokens = request.max_tokens
    if (request.stop_sequences !== null) chat.stop = request.stop_sequences
    if (request.temperature !== null) chat.temperature = request.temperature
    if (request.top_p !== null) chat.top_p = request.top_p
    if (request.top_k !== null) chat.top_k = request.top_k
    if (request.kv_transfer_params !== null) chat.kv_transfer_params = request.kv_transfer_params as Json
    // _handle_streaming_options: a stream always reports usage, continuously.
    if (request.stream) {
      chat.stream = true
      chat.stream_options = { include_usage: true, continuous_usage_stats: true }
    }
  }
  if (request.chat_template_kwargs !== null) chat.chat_template_kwargs = request.chat_template_kwargs as Json
  // _convert_tool_choice, then _convert_tools (tools without a choice mean "auto").
  const choice = request.tool_choice
  if (choice !== null) {
    const mapped: Record<string, Json> = { auto: 'auto', any: 'required', none: 'none' }
    chat.tool_choice = mapped[choice.type] ?? { type: 'function', function: { name: choice.name ?? '' } }
  }
  if (request.tools !== null) {
    chat.tools = request.tools.map((tool) => ({
      type: 'function',
      function: { name: tool.name, description: tool.description, parameters: tool.input_schema as Json },
    }))
    chat.tool_choice ??= 'auto'
  }
  return chat
}
