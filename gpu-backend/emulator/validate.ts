// Request checks in vLLM's order (v0.11.0; v0.20.2 where noted: `options.vllmVersion`):
//   1. the body schema (FastAPI/pydantic, protocol.py): "before" validators, then field types -> 400 "Bad Request"
//   2. the serving layer (serving_chat.py / serving_completion.py): model name (404), tool choice,
//      prompt rendering and the context length (serving_engine.py _validate_input, renderer.py),
//      max_tokens (entrypoints/utils.py get_max_tokens), SamplingParams (sampling_params.py) -> 400 BadRequestError
//   3. the engine (v1/engine/processor.py, output_processor.py): `engineError`, which v1.ts reports
//      inside the stream for stream: true, as vLLM does.

import { createHash } from 'node:crypto'
import { contentText, renderChat } from './chat-template.ts'
import { runBeforeValidators, type Endpoint } from './before-validators.ts'
import { schemaErrorType, type ApiError } from './errors.ts'
import { ignoredFields } from './known-fields.ts'
import type { EmulatorOptions, VllmVersion } from './options.ts'
import { parseSampling, type Sampling } from './sampling.ts'
import { formatErrors, isDict, optional, readBool, valueError, type Dict, type PydanticError } from './pydantic.ts'
import {
  buildSamplingParams,
  engineError,
  readRequestFields,
  type EngineRefusal,
  type RequestFields,
  type SamplingParams,
} from './request-params.ts'
import { countText, encodeCompletionPrompt } from './tokenizer.ts'
import { badRequest, chatMaxTokens, completionMaxTokens, maxTokensV0202, outputOverContext, requestedMaxTokens } from './context-length.ts'

export type { Endpoint } from './before-validators.ts'

/** One prompt prefix the prefix cache can remember: a hash and its size in tokens. */
export type PromptPrefix = { key: string; tokens: number }

/**
 * What vLLM's serving layer did to the prompt before it answered (serving_engine.py
 * _preprocess_chat for chat: the chat template rendered, then tokenized; renderer.py for a
 * completion's text prompt: tokenized only; token ids: neither). `tokens` is what the tokenizer
 * produced (0 when nothing was tokenized); preprocess.ts turns it into time.
 */
export type Preprocessing = { tokens: number; chatTemplate: boolean }

export type GenerationRequest = {
  endpoint: Endpoint
  stream: boolean
  includeUsage: boolean
  continuousUsage: boolean
  /** The most completion tokens the request allows (get_max_tokens). */
  maxTokens: number
  promptTokens: number
  /** Every text of the prompt, searched for `[emulator ...]` directives. */
  texts: string[]
  /** Identifies the prompt for the deterministic text generator. */
  requestKey: string
  /**
   * Growing prefixes of the prompt (per message for chat), shortest first. Hashed only when called,
   * once the request is accepted (v1.ts admit), as vLLM hashes a request's blocks only in the engine.
   */
  prefixes: () => PromptPrefix[]
  /** The preprocessing vLLM did before answering (preprocess.ts: the delay before the headers). */
  preprocessed: Preprocessing
  /** n, stop, stop_token_ids, include_stop_str_in_output, min_tokens (sampling.ts). */
  sampling: Sampling
  /** The SamplingParams vLLM would build, for the request log. */
  samplingParams: SamplingParams
  /** The request's `priority` (lower is handled first under --scheduling-policy priority; ignored under fcfs). */
  priority: number
  /** The body's request_id: vLLM's request id when no X-Request-Id header is sent. */
  bodyRequestId: string | null
  /** Top-level fields vLLM accepts and ignores (OpenAIBaseModel extra="allow"). */
  ignoredFields: string[]
  /** What the engine refuses after the HTTP layer accepted the request (Processor checks). */
  engineError: EngineRefusal | null
}

/**
 * `schema`: refused by the request model itself (pydantic), before any handler ran. `preprocessed`:
 * refused only after the prompt was rendered and tokenized (the context length, SamplingParams).
 */
type Failure = { ok: false; error: ApiError; schema?: boolean; preprocessed?: Preprocessing }
type Result = { ok: true; request: GenerationRequest } | Failure

function schemaError(options: EmulatorOptions, errors: readonly PydanticError[]): Failure {
  return { ok: false, schema: true, error: { status: 400, type: schemaErrorType(options.errorFormat), message: formatErrors(errors) } }
}

/** Python's len() of a str: code points (a UTF-16 low surrogate is the second half of one). */
function codePointLength(text: string): number {
  let count = 0
  for (let index = 0; index < text.length; index++) {
    const unit = text.charCodeAt(index)
    if (unit < 0xdc00 || unit > 0xdfff) count++
  }
  return count
}

function hashOf(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 32)
}

/** A chained key: the parent's key and this part, so a prefix's key costs its own part only. */
function chainedKey(parent: string, part: unknown): string {
  return createHash('sha256').update(parent).update(JSON.stringify(part)).digest('hex').slice(0, 32)
}

type StreamFlags = { stream: boolean; includeUsage: boolean; continuousUsage: boolean }

/**
 * v0.11.0: StreamOptions.include_usage defaults to True and continuous_usage_stats to False
 * (protocol.py); the stream generator counts any stream_options object, {} included, and sets
 * include_continuous_usage = include_usage and continuous_usage_stats (serving_chat.py).
 * v0.20.2: include_usage defaults to False (openai/engine/protocol.py StreamOptions), so {} means no
 * usage; continuous usage still needs include_usage (entrypoints/utils.py should_include_usage).
 */
function streamFlags(version: VllmVersion, body: Dict, errors: PydanticError[]): StreamFlags {
  const stream = optional(body, 'stream', readBool, errors) ?? false
  const options = body.stream_options
  if (options === undefined || options === null) return { stream, includeUsage: false, continuousUsage: false }
  if (!isDict(options)) {
    const msg = 'Input should be a valid dictionary or instance of StreamOptions'
    errors.push({ type: 'model_type', loc: ['body', 'stream_options'], msg })
    return { stream, includeUsage: false, continuousUsage: false }
  }
  const at = (field: string) => ({ [field]: options[field] })
  const include =
    options.include_usage === undefined ? version === '0.11.0' : optional(at('include_usage'), 'include_usage', readBool, errors)
  const continuous = optional(at('continuous_usage_stats'), 'continuous_usage_stats', readBool, errors)
  const includeUsage = include === true
  return { stream, includeUsage, continuousUsage: includeUsage && continuous === true }
}

function checkModel(options: EmulatorOptions, body: Dict, errors: PydanticError[]): Failure | null {
  const model = body.model
  if (model === undefined || model === null) return null
  if (typeof model !== 'string') {
    errors.push({ type: 'string_type', loc: ['body', 'model'], msg: 'Input should be a valid string' })
    return null
  }
  if (model === options.servedModelName) return null
  return { ok: false, error: { status: 404, type: 'NotFoundError', message: `The model \`${model}\` does not exist.` } }
}

type Prompt = {
  /** A text prompt's length in code points (the rendered chat template, a completion's string); null for token ids. */
  text: { chars: number } | null
  texts: string[]
  promptTokens: number
  requestKey: string
  prefixes: () => PromptPrefix[]
  preprocessed: Preprocessing
}

/** Pydantic's checks of `messages` (simplified: each must be an object with a string role). */
function checkMessages(body: Dict, errors: PydanticError[]): { role: string; content: unknown }[] | null {
  const messages = body.messages
  const push = (type: string, msg: string, index?: number): null => {
    errors.push({ type, loc: index === undefined ? ['body', 'messages'] : ['body', 'messages', index], msg })
    return null
  }
  if (messages === undefined) return push('missing', 'Field required')
  if (!Array.isArray(messages)) return push('list_type', 'Input should be a valid list')
  if (messages.length === 0) return push('too_short', 'List should have at least 1 item after validation, not 0')
  const parsed: { role: string; content: unknown }[] = []
  for (const [index, message] of (messages as unknown[]).entries()) {
    const content = isDict(message) ? message.content : undefined
    const contentOk = content === undefined || content === null || typeof content === 'string' || Array.isArray(content)
    if (!isDict(message) || typeof message.role !== 'string' || !contentOk) {
      push('model_type', 'Input should be a chat message with a string role and text content', index)
      continue
    }
    parsed.push({ role: message.role, content })
  }
  return parsed
}

/**
 * Every prefix's key of a chat prompt, as a hash chain: each message's key hashes its parent's key
 * and the message alone, so the work is linear in the prompt (vLLM's block hashes chain the same
 * way: v1/core/kv_cache_utils.py hash_block_tokens, parent hash + the block's tokens, walked once by
 * get_request_block_hasher). The root holds cache_salt (hashed into the first block only,
 * generate_block_hash_extra_keys) and the head (BOS + the last system message), so salted prompts
 * share nothing with others. The whole prompt, generation prompt included, is the last prefix: a
 * repeated request hits in full.
 */
function chatPrefixes(messages: readonly unknown[], head: string, counts: readonly number[], salt: string | null): PromptPrefix[] {
  const prefixes: PromptPrefix[] = []
  let key = hashOf([salt, head])
  let running = counts[0] ?? 0
  for (let index = 0; index < messages.length; index++) {
    running += counts[index + 1] ?? 0
    key = chainedKey(key, messages[index])
    prefixes.push({ key, tokens: running })
  }
  running += counts[messages.length + 1] ?? 0
  prefixes.push({ key: chainedKey(key, 'generation prompt'), tokens: running })
  return prefixes
}

/** The rendered R1-Distill prompt, counted with the real BPE; prefixes end at each message. */
function chatPrompt(messages: { role: string; content: unknown }[], salt: string | null): Prompt {
  const { segments } = renderChat(messages)
  const counts = segments.map(countText)
  const promptTokens = counts.reduce((sum, count) => sum + count, 0)
  const texts = messages.map((message) => contentText(message.content))
  const prefixes = () => chatPrefixes(messages, segments[0] ?? '', counts, salt)
  const chars = segments.reduce((sum, segment) => sum + codePointLength(segment), 0)
  return {
    text: { chars },
    texts,
    promptTokens,
    requestKey: JSON.stringify(messages),
    prefixes,
    preprocessed: { tokens: promptTokens, chatTemplate: true },
  }
}

function completionPrompt(body: Dict, salt: string | null, errors: PydanticError[]): Prompt | Failure {
  const raw = body.prompt
  const single = Array.isArray(raw) && raw.length === 1 && typeof raw[0] === 'string' ? raw[0] : raw
  const isTokenIds = Array.isArray(single) && single.length > 0 && single.every((id) => Number.isInteger(id))
  if (typeof single !== 'string' && !isTokenIds) {
    return badRequest('The emulator accepts one prompt per request: a string or a list of token ids.')
  }
  const addSpecial = optional(body, 'add_special_tokens', readBool, errors) ?? true
  const text = typeof single === 'string' ? single : ''
  const promptTokens = typeof single === 'string' ? encodeCompletionPrompt(single, addSpecial).length : (single as unknown[]).length
  const prefixes = () => [{ key: hashOf([salt, single]), tokens: promptTokens }]
  // renderer.py: a text prompt is tokenized (off the event loop); token ids are taken as they are.
  const preprocessed = { tokens: typeof single === 'string' ? promptTokens : 0, chatTemplate: false }
  return {
    text: typeof single === 'string' ? { chars: codePointLength(single) } : null,
    texts: [text],
    promptTokens,
    requestKey: JSON.stringify(single),
    prefixes,
    preprocessed,
  }
}

/** serving_chat.py create_chat_completion's checks before the prompt is rendered. */
function servingChecks(fields: RequestFields): Failure | null {
  if (fields.toolChoice === 'auto') {
    return badRequest('"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set')
  }
  if (fields.chatTemplate !== null) {
    return badRequest(
      'Chat template is passed with request, but --trust-request-chat-template is not set. Refused request with untrusted chat template.',
    )
  }
  return null
}

/** Validates a parsed JSON body for /v1/chat/completions or /v1/completions (the tokenizer must be loaded). */
export function validateGeneration(options: EmulatorOptions, endpoint: Endpoint, body: unknown): Result {
  if (!isDict(body)) {
    const msg = 'Input should be a valid dictionary or object to extract fields from'
    return schemaError(options, [{ type: 'model_attributes_type', loc: ['body'], msg }])
  }
  const data: Dict = { ...body }
  const before = runBeforeValidators(endpoint, data)
  if (before !== null) return schemaError(options, [valueError(before)])
  const errors: PydanticError[] = []
  const messages = endpoint === 'chat' ? checkMessages(data, errors) : null
  const wrongModel = checkModel(options, data, errors)
  const version = options.vllmVersion
  const requested = requestedMaxTokens(version, endpoint, data, errors)
  const flags = streamFlags(version, data, errors)
  const fields = readRequestFields(endpoint, data, errors)
  if (errors.length > 0) return schemaError(options, errors)
  if (wrongModel !== null) return wrongModel
  if (endpoint === 'chat') {
    const refused = servingChecks(fields)
    if (refused !== null) return refused
  }
  if (version === '0.20.2') {
    // TokenizeParams is built before the render (serve/render/serving.py, request.build_tok_params).
    const over = outputOverContext(options, requested)
    if (over !== null) return over
  }
  const prompt = endpoint === 'chat' ? chatPrompt(messages ?? [], fields.cacheSalt) : completionPrompt(data, fields.cacheSalt, errors)
  if ('ok' in prompt) return prompt
  // From here on vLLM has rendered and tokenized the prompt: a refusal comes after that work.
  const { preprocessed } = prompt
  const fit =
    version === '0.11.0'
      ? (endpoint === 'chat' ? chatMaxTokens : completionMaxTokens)(options, prompt.promptTokens, requested.tokens)
      : maxTokensV0202(options, prompt.promptTokens, requested, prompt.text)
  // Refused on its characters before the tokenizer ran: only the render's work came first (here none, never slower).
  if (typeof fit !== 'number') return fit.error.param === 'input_text' ? fit : { ...fit, preprocessed }
  const built = buildSamplingParams(fields, fit, version)
  if (!built.ok) {
    return {
      ok: false,
      error: { status: built.status, type: built.type, message: built.message, param: built.param ?? null },
      preprocessed,
    }
  }
  return {
    ok: true,
    request: {
      endpoint,
      ...flags,
      maxTokens: fit,
      texts: prompt.texts,
      promptTokens: prompt.promptTokens,
      requestKey: prompt.requestKey,
      prefixes: prompt.prefixes,
      preprocessed: prompt.preprocessed,
      samplingParams: built.params,
      priority: fields.priority,
      bodyRequestId: fields.requestId,
      ignoredFields: ignoredFields(endpoint, body),
      engineError: engineError(built.params, version),
      sampling: parseSampling(body),
    },
  }
}
