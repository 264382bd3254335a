// Request checks in vLLM's order: the body schema (FastAPI/pydantic), then the model name,
// then the context length. Each failure is the ApiError vLLM would answer with.

import { createHash } from 'node:crypto'
import { schemaErrorType, type ApiError } from './errors.ts'
import type { EmulatorOptions } from './options.ts'
import { parseSampling, type Sampling } from './sampling.ts'

export type Endpoint = 'chat' | 'completion'

/** One prompt prefix the prefix cache can remember: a hash and its size in tokens. */
export type PromptPrefix = { key: string; tokens: number }

export type GenerationRequest = {
  endpoint: Endpoint
  stream: boolean
  includeUsage: boolean
  continuousUsage: boolean
  /** The most completion tokens the request allows (its max_tokens, or what is left of the context). */
  maxTokens: number
  promptTokens: number
  /** Every text of the prompt, searched for `[emulator ...]` directives. */
  texts: string[]
  /** Identifies the prompt for the deterministic text generator. */
  requestKey: string
  /** Growing prefixes of the prompt (per message for chat), shortest first. */
  prefixes: PromptPrefix[]
  /** n, stop, stop_token_ids, include_stop_str_in_output, min_tokens (sampling.ts). */
  sampling: Sampling
}

type Failure = { ok: false; error: ApiError }
type Result = { ok: true; request: GenerationRequest } | Failure
type Body = { [key: string]: unknown }

const utf8 = new TextEncoder()

/**
 * Prompt token estimate (no tokenizer here): ceil(UTF-8 bytes / 4) per message text,
 * plus 4 per message for the chat template's role markers. A completion prompt is
 * ceil(bytes / 4) + 1 (the BOS token), or its length when given as token ids.
 */
export function estimateTokens(text: string): number {
  return Math.ceil(utf8.encode(text).length / 4)
}

function schemaError(options: EmulatorOptions, errors: string): Failure {
  return { ok: false, error: { status: 400, type: schemaErrorType(options.errorFormat), message: errors } }
}

/** pydantic's error list as FastAPI prints it (without the echoed input, which may be a prompt). */
function pydanticError(type: string, loc: readonly (string | number)[], msg: string): string {
  const where = loc.map((part) => (typeof part === 'number' ? String(part) : `'${part}'`)).join(', ')
  return `[{'type': '${type}', 'loc': (${where}${loc.length === 1 ? ',' : ''}), 'msg': '${msg}'}]`
}

function badRequest(message: string): Failure {
  return { ok: false, error: { status: 400, type: 'BadRequestError', message } }
}

function isObject(value: unknown): value is Body {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function hashOf(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 32)
}

/** The text of a message's content: a string, or the text parts of a content array. */
function contentText(content: unknown): string | null {
  if (content === null || content === undefined) return ''
  if (typeof content === 'string') return content
  if (!Array.isArray(content)) return null
  return content
    .map((part: unknown) => (isObject(part) && typeof part.text === 'string' ? part.text : ''))
    .join('')
}

type StreamFlags = { stream: boolean; includeUsage: boolean; continuousUsage: boolean }

function streamFlags(options: EmulatorOptions, body: Body): { ok: true; flags: StreamFlags } | Failure {
  const { stream, stream_options: streamOptions } = body
  if (stream !== undefined && stream !== null && typeof stream !== 'boolean') {
    return schemaError(options, pydanticError('bool_parsing', ['body', 'stream'], 'Input should be a valid boolean'))
  }
  if (streamOptions !== undefined && streamOptions !== null && !isObject(streamOptions)) {
    const message = 'Input should be a valid dictionary or instance of StreamOptions'
    return schemaError(options, pydanticError('model_type', ['body', 'stream_options'], message))
  }
  // Python truthiness: an empty stream_options object is allowed without stream.
  if (isObject(streamOptions) && Object.keys(streamOptions).length > 0 && stream !== true) {
    const message = 'Value error, Stream options can only be defined when `stream=True`.'
    return schemaError(options, pydanticError('value_error', ['body'], message))
  }
  const includeUsage = isObject(streamOptions) && streamOptions.include_usage === true
  // vLLM: include_continuous_usage = include_usage and continuous_usage_stats
  const continuousUsage = includeUsage && isObject(streamOptions) && streamOptions.continuous_usage_stats === true
  return { ok: true, flags: { stream: stream === true, includeUsage, continuousUsage } }
}

/** max_completion_tokens wins over the deprecated max_tokens; null when neither is set. */
function requestedMaxTokens(options: EmulatorOptions, body: Body): { ok: true; value: number | null } | Failure {
  for (const field of ['max_completion_tokens', 'max_tokens']) {
    const value = body[field]
    if (value === undefined || value === null) continue
    if (!Number.isInteger(value)) {
      return schemaError(options, pydanticError('int_type', ['body', field], 'Input should be a valid integer'))
    }
    if ((value as number) < 1) return badRequest(`max_tokens must be at least 1, got ${String(value)}.`)
    return { ok: true, value: value as number }
  }
  return { ok: true, value: null }
}

function checkModel(options: EmulatorOptions, body: Body): Failure | null {
  const model = body.model
  if (model === undefined || model === null) return null
  if (typeof model !== 'string') {
    return schemaError(options, pydanticError('string_type', ['body', 'model'], 'Input should be a valid string'))
  }
  if (model === options.servedModelName) return null
  return { ok: false, error: { status: 404, type: 'NotFoundError', message: `The model \`${model}\` does not exist.` } }
}

/** vLLM's context-length check, with the messages of the versions the spec quotes. */
function fitContext(options: EmulatorOptions, promptTokens: number, requested: number | null): { ok: true; value: number } | Failure {
  const limit = options.maxModelLen
  if (requested === null && promptTokens >= limit) {
    return badRequest(
      `This model's maximum context length is ${limit} tokens. However, you requested ${promptTokens} tokens ` +
        'in the messages, Please reduce the length of the messages.',
    )
  }
  if (requested !== null && promptTokens + requested > limit) {
    return badRequest(
      `This model's maximum context length is ${limit} tokens. However, you requested ${promptTokens + requested} tokens ` +
        `(${promptTokens} in the messages, ${requested} in the completion). Please reduce the length of the messages or completion.`,
    )
  }
  return { ok: true, value: requested ?? limit - promptTokens }
}

type Prompt = { texts: string[]; promptTokens: number; requestKey: string; prefixes: PromptPrefix[] }

function chatPrompt(options: EmulatorOptions, body: Body): { ok: true; prompt: Prompt } | Failure {
  const messages = body.messages
  const invalid = (type: string, msg: string, index?: number) =>
    schemaError(options, pydanticError(type, index === undefined ? ['body', 'messages'] : ['body', 'messages', index], msg))
  if (messages === undefined) return invalid('missing', 'Field required')
  if (!Array.isArray(messages)) return invalid('list_type', 'Input should be a valid list')
  if (messages.length === 0) return invalid('too_short', 'List should have at least 1 item after validation, not 0')
  const texts: string[] = []
  const prefixes: PromptPrefix[] = []
  let promptTokens = 0
  for (const [index, message] of messages.entries()) {
    const text = isObject(message) && typeof message.role === 'string' ? contentText(message.content) : null
    if (text === null) return invalid('model_type', 'Input should be a chat message with a string role and text content', index)
    texts.push(text)
    promptTokens += estimateTokens(text) + 4
    prefixes.push({ key: hashOf(messages.slice(0, index + 1)), tokens: promptTokens })
  }
  return { ok: true, prompt: { texts, promptTokens, requestKey: JSON.stringify(messages), prefixes } }
}

function completionPrompt(options: EmulatorOptions, body: Body): { ok: true; prompt: Prompt } | Failure {
  const raw = body.prompt
  const single = Array.isArray(raw) && raw.length === 1 && typeof raw[0] === 'string' ? raw[0] : raw
  const isTokenIds = Array.isArray(single) && single.length > 0 && single.every((id) => Number.isInteger(id))
  if (single === undefined || single === null || single === '' || (Array.isArray(single) && single.length === 0)) {
    const message = 'Value error, Either prompt or prompt_embeds must be provided and non-empty.'
    return schemaError(options, pydanticError('value_error', ['body'], message))
  }
  if (typeof single !== 'string' && !isTokenIds) {
    return badRequest('The emulator accepts one prompt per request: a string or a list of token ids.')
  }
  const text = typeof single === 'string' ? single : ''
  const promptTokens = typeof single === 'string' ? estimateTokens(single) + 1 : (single as unknown[]).length
  const prefixes = [{ key: hashOf(single), tokens: promptTokens }]
  return { ok: true, prompt: { texts: [text], promptTokens, requestKey: JSON.stringify(single), prefixes } }
}

/** Validates a parsed JSON body for /v1/chat/completions or /v1/completions. */
export function validateGeneration(options: EmulatorOptions, endpoint: Endpoint, body: unknown): Result {
  if (!isObject(body)) {
    const message = 'Input should be a valid dictionary or object to extract fields from'
    return schemaError(options, pydanticError('model_attributes_type', ['body'], message))
  }
  const prompt = endpoint === 'chat' ? chatPrompt(options, body) : completionPrompt(options, body)
  if (!prompt.ok) return prompt
  const flags = streamFlags(options, body)
  if (!flags.ok) return flags
  const requested = requestedMaxTokens(options, body)
  if (!requested.ok) return requested
  const wrongModel = checkModel(options, body)
  if (wrongModel !== null) return wrongModel
  // /v1/completions defaults max_tokens to 16, like OpenAI's legacy endpoint.
  const { texts, promptTokens, requestKey, prefixes } = prompt.prompt
  const maxTokens = fitContext(options, promptTokens, requested.value ?? (endpoint === 'completion' ? 16 : null))
  if (!maxTokens.ok) return maxTokens
  return {
    ok: true,
    request: { endpoint, ...flags.flags, maxTokens: maxTokens.value, promptTokens, texts, requestKey, prefixes, sampling: parseSampling(body) },
  }
}
