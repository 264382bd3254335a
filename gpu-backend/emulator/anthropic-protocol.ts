// vLLM v0.20.2's Anthropic request models: vllm/entrypoints/anthropic/protocol.py
// (AnthropicMessagesRequest, AnthropicCountTokensRequest, pydantic with the default extra="ignore",
// so unknown fields such as `thinking` are dropped). Their conversion to a chat completion request
// (serving.py _convert_anthropic_to_openai_request) is anthropic-to-chat.ts.

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
