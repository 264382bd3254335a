// vLLM v0.20.2's conversion of an Anthropic Messages request into the chat request its chat path
// serves (vllm/entrypoints/anthropic/serving.py, _convert_anthropic_to_openai_request and its
// helpers); the request itself is checked first by anthropic-protocol.ts.
import { isDict, type Dict } from './pydantic.ts'
import { pythonJsonDumps, type Json } from './errors.ts'
import type { AnthropicBlock, AnthropicMessage, CountTokensRequest, MessagesRequest } from './anthropic-protocol.ts'

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
