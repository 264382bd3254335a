// The sampling fields of a generation request, typed as pydantic types them (protocol.py), then
// turned into vLLM's SamplingParams and checked as it checks them:
//   to_sampling_params (protocol.py) -> SamplingParams.from_optional / __post_init__ / _verify_args
//   (vllm/sampling_params.py): a ValueError is a 400 BadRequestError before anything is streamed
//   (serving_chat.py, create_chat_completion: `except ValueError as e: create_error_response(str(e))`);
//   then the engine's Processor (vllm/v1/engine/processor.py, _validate_params), whose ValueError
//   surfaces inside the stream for stream: true (engineError).
// n, stop and stop_token_ids are read in sampling.ts.

import type { Json } from './errors.ts'
import type { VllmVersion } from './options.ts'
import { readResponseFormat, type StructuredOutputs } from './response-format.ts'
import {
  isDict,
  optional,
  pyFloat,
  pyRepr,
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
import { VOCAB_SIZE } from './tokenizer.ts'

/**
 * The model's generation_config.json (temperature 0.6, top_p 0.95), which vLLM v0.11.0 applies
 * as default sampling params (ModelConfig generation_config "auto", get_diff_sampling_param).
 */
const GENERATION_CONFIG = { temperature: 0.6, top_p: 0.95 }

/** ModelConfig.max_logprobs default. */
const MAX_LOGPROBS = 20

export type RequestFields = {
  frequencyPenalty: number
  presencePenalty: number
  temperature: number | null
  topP: number | null
  topK: number | null
  minP: number | null
  repetitionPenalty: number | null
  seed: number | null
  minTokens: number
  ignoreEos: boolean
  skipSpecialTokens: boolean
  logitBias: Dict | null
  /** chat: top_logprobs when logprobs is true; completion: logprobs. */
  logprobs: number | null
  promptLogprobs: number | null
  structuredOutputs: StructuredOutputs
  priority: number
  cacheSalt: string | null
  /** The body's request_id (vLLM's default when no X-Request-Id header), or null. */
  requestId: string | null
  toolChoice: unknown
  chatTemplate: string | null
}

/** A field that has a non-None default: present-but-null is a type error. */
function withDefault<T>(body: Dict, field: string, read: (v: unknown, loc: Loc) => Read<T>, fallback: T, errors: PydanticError[]): T {
  if (body[field] === undefined) return fallback
  const result = read(body[field], ['body', field])
  if (result.ok) return result.value
  errors.push(result.error)
  return fallback
}

function readLogitBias(body: Dict, errors: PydanticError[]): Dict | null {
  const bias = optional(body, 'logit_bias', readDict, errors)
  if (bias === null) return null
  for (const [token, value] of Object.entries(bias)) {
    const read = readFloat(value, ['body', 'logit_bias', token])
    if (!read.ok) errors.push(read.error)
  }
  return bias
}

/** Reads the sampling fields in ChatCompletionRequest's declaration order, collecting type errors. */
export function readRequestFields(endpoint: 'chat' | 'completion', body: Dict, errors: PydanticError[]): RequestFields {
  const frequencyPenalty = optional(body, 'frequency_penalty', readFloat, errors) ?? 0
  const logitBias = readLogitBias(body, errors)
  let logprobs: number | null
  if (endpoint === 'chat') {
    const wanted = optional(body, 'logprobs', readBool, errors) ?? false
    const top = optional(body, 'top_logprobs', readInt, errors) ?? 0
    logprobs = wanted ? top : null
  } else {
    logprobs = optional(body, 'logprobs', readInt, errors)
  }
  const presencePenalty = optional(body, 'presence_penalty', readFloat, errors) ?? 0
  const structuredFromFormat = readResponseFormat(body, errors)
  const seed = optional(body, 'seed', readSeed, errors)
  const temperature = optional(body, 'temperature', readFloat, errors)
  const topP = optional(body, 'top_p', readFloat, errors)
  const tools = body.tools
  if (tools !== undefined && tools !== null && !Array.isArray(tools)) {
    errors.push({ type: 'list_type', loc: ['body', 'tools'], msg: 'Input should be a valid list' })
  }
  const topK = optional(body, 'top_k', readInt, errors)
  const minP = optional(body, 'min_p', readFloat, errors)
  const repetitionPenalty = optional(body, 'repetition_penalty', readFloat, errors)
  const ignoreEos = withDefault(body, 'ignore_eos', readBool, false, errors)
  const minTokens = withDefault(body, 'min_tokens', readInt, 0, errors)
  const skipSpecialTokens = withDefault(body, 'skip_special_tokens', readBool, true, errors)
  const promptLogprobs = optional(body, 'prompt_logprobs', readInt, errors)
  const chatTemplate = optional(body, 'chat_template', readString, errors)
  const structured = optional(body, 'structured_outputs', readStructuredOutputs, errors)
  const priority = withDefault(body, 'priority', readInt, 0, errors)
  const requestId = optional(body, 'request_id', readString, errors)
  const cacheSalt = optional(body, 'cache_salt', readString, errors)
  return {
    frequencyPenalty,
    presencePenalty,
    temperature,
    topP,
    topK,
    minP,
    repetitionPenalty,
    seed,
    minTokens,
    ignoreEos,
    skipSpecialTokens,
    logitBias,
    logprobs,
    promptLogprobs,
    priority,
    cacheSalt,
    requestId,
    chatTemplate,
    structuredOutputs: mergeStructured(structured, structuredFromFormat),
    toolChoice: body.tool_choice ?? 'none',
  }
}

/** seed: Optional[int] = Field(ge=_LONG_INFO.min, le=_LONG_INFO.max), a signed 64-bit int. */
function readSeed(value: unknown, loc: Loc): Read<number> {
  const read = readInt(value, loc)
  if (!read.ok) return read
  if (read.value > 9223372036854775807) {
    return { ok: false, error: { type: 'less_than_equal', loc, msg: 'Input should be less than or equal to 9223372036854775807' } }
  }
  if (read.value < -9223372036854775808) {
    return { ok: false, error: { type: 'greater_than_equal', loc, msg: 'Input should be greater than or equal to -9223372036854775808' } }
  }
  return read
}

function readStructuredOutputs(value: unknown, loc: Loc): Read<Dict> {
  if (isDict(value)) return { ok: true, value }
  return {
    ok: false,
    error: { type: 'dataclass_type', loc, msg: 'Input should be a dictionary or an instance of StructuredOutputsParams' },
  }
}

/** to_sampling_params: response_format sets its constraint on the structured_outputs given (or a new one). */
function mergeStructured(given: Dict | null, fromFormat: StructuredOutputs): StructuredOutputs {
  if (fromFormat.kind === 'none') return given === null ? fromFormat : { kind: 'params', params: given }
  if (fromFormat.kind === 'params') return { kind: 'params', params: { ...(given ?? {}), ...fromFormat.params } }
  return fromFormat
}

export type SamplingParams = { [key: string]: Json }

type Built = { ok: true; params: SamplingParams } | { ok: false; status: number; type: string; message: string; param?: string | null }

const badRequest = (message: string, param: string | null = null): Built => ({
  ok: false,
  status: 400,
  type: 'BadRequestError',
  message,
  param,
})

/**
 * The checks v0.20.2 raises as VLLMValidationError with a `parameter` (sampling_params.py
 * _verify_args: temperature, top_p, max_tokens; _validate_logprobs; _validate_logit_bias), which
 * create_error_response puts in `param`. The others stay ValueError (param null), as in v0.11.0.
 */
const V0202_PARAMS: readonly string[] = ['temperature', 'top_p', 'max_tokens', 'logprobs', 'prompt_logprobs', 'logit_bias']

/** The message's leading field name, when v0.20.2 names it as the error's param. */
function paramOf(version: VllmVersion, message: string): string | null {
  if (version === '0.11.0') return null
  const field = /^(\w+) must /.exec(message)?.[1] ?? null
  return field !== null && V0202_PARAMS.includes(field) ? field : null
}

/** SamplingParams.from_optional: logit_bias keys become ints (Python int()), biases clamp to [-100, 100]. */
function logitBiasIds(bias: Dict): { ok: true; value: { [id: string]: number } } | { ok: false; message: string } {
  const out: { [id: string]: number } = {}
  for (const [token, value] of Object.entries(bias)) {
    if (!/^\s*[+-]?\d+(_\d+)*\s*$/.test(token)) return { ok: false, message: `invalid literal for int() with base 10: ${pyRepr(token)}` }
    out[String(Number(token.replace(/_/g, '')))] = Math.min(100, Math.max(-100, Number(value)))
  }
  return { ok: true, value: out }
}

type Numbers = {
  presence_penalty: number
  frequency_penalty: number
  repetition_penalty: number
  temperature: number
  top_p: number
  top_k: number
  min_p: number
  max_tokens: number
  min_tokens: number
}

/** _verify_args, in its order, for the fields read here (floats print as Python prints them). */
function verify(p: Numbers): string | null {
  const f = pyFloat
  if (!(p.presence_penalty >= -2 && p.presence_penalty <= 2)) return `presence_penalty must be in [-2, 2], got ${f(p.presence_penalty)}.`
  if (!(p.frequency_penalty >= -2 && p.frequency_penalty <= 2))
    return `frequency_penalty must be in [-2, 2], got ${f(p.frequency_penalty)}.`
  if (p.repetition_penalty <= 0) return `repetition_penalty must be greater than zero, got ${f(p.repetition_penalty)}.`
  if (p.temperature < 0) return `temperature must be non-negative, got ${f(p.temperature)}.`
  if (!(p.top_p > 0 && p.top_p <= 1)) return `top_p must be in (0, 1], got ${f(p.top_p)}.`
  if (p.top_k < -1) return `top_k must be 0 (disable), or at least 1, got ${p.top_k}.`
  if (!(p.min_p >= 0 && p.min_p <= 1)) return `min_p must be in [0, 1], got ${f(p.min_p)}.`
  if (p.max_tokens < 1) return `max_tokens must be at least 1, got ${p.max_tokens}.`
  if (p.min_tokens < 0) return `min_tokens must be greater than or equal to 0, got ${p.min_tokens}.`
  if (p.min_tokens > p.max_tokens) return `min_tokens must be less than or equal to max_tokens=${p.max_tokens}, got ${p.min_tokens}.`
  return null
}

/** to_sampling_params + SamplingParams construction for a request whose max_tokens is settled (get_max_tokens). */
export function buildSamplingParams(fields: RequestFields, maxTokens: number, version: VllmVersion): Built {
  if (fields.structuredOutputs.kind === 'missing_json_schema') {
    // `assert json_schema is not None` in to_sampling_params: an AssertionError. v0.11.0: no handler
    // maps it, so api_server.py answers 500 with the exception's (empty) text and the phrase as its
    // type. v0.20.2 (openai/chat_completion/protocol.py, same assert): exception_handler
    // (openai/server_utils.py) -> create_error_response: InternalServerError, 500.
    return { ok: false, status: 500, type: version === '0.11.0' ? 'Internal Server Error' : 'InternalServerError', message: '' }
  }
  let logitBias: { [id: string]: number } | null = null
  if (fields.logitBias !== null) {
    const ids = logitBiasIds(fields.logitBias)
    if (!ids.ok) return badRequest(ids.message)
    logitBias = ids.value
  }
  const numbers: Numbers = {
    presence_penalty: fields.presencePenalty,
    frequency_penalty: fields.frequencyPenalty,
    repetition_penalty: fields.repetitionPenalty ?? 1,
    temperature: fields.temperature ?? GENERATION_CONFIG.temperature,
    top_p: fields.topP ?? GENERATION_CONFIG.top_p,
    top_k: fields.topK ?? 0,
    min_p: fields.minP ?? 0,
    max_tokens: maxTokens,
    min_tokens: fields.minTokens,
  }
  // __post_init__: a tiny positive temperature is raised to 0.01 before the checks.
  if (numbers.temperature > 0 && numbers.temperature < 0.01) numbers.temperature = 0.01
  const problem = verify(numbers)
  if (problem !== null) return badRequest(problem, paramOf(version, problem))
  if (numbers.temperature < 1e-5) Object.assign(numbers, { top_p: 1, top_k: 0, min_p: 0 }) // greedy sampling
  const structured = fields.structuredOutputs.kind === 'params' ? (fields.structuredOutputs.params as Json) : null
  return {
    ok: true,
    params: {
      ...numbers,
      seed: fields.seed === -1 ? null : fields.seed,
      logprobs: fields.logprobs,
      prompt_logprobs: fields.promptLogprobs,
      ignore_eos: fields.ignoreEos,
      skip_special_tokens: fields.skipSpecialTokens,
      logit_bias: logitBias,
      structured_outputs: structured,
      priority: fields.priority,
      cache_salt: fields.cacheSalt,
    },
  }
}

/** What the engine refuses once it takes the request: its message and (v0.20.2) its param. */
export type EngineRefusal = { message: string; param: string | null }

/**
 * Processor._validate_params (logprobs, then logit_bias ids), raised once the engine takes the
 * request. v0.20.2: the same texts from SamplingParams.verify (sampling_params.py
 * _validate_logprobs, _validate_logit_bias, called by v1/engine/input_processor.py
 * _validate_params), as VLLMValidationError with param logprobs / prompt_logprobs / logit_bias.
 */
export function engineError(params: SamplingParams, version: VllmVersion): EngineRefusal | null {
  const refusal = (message: string, param: string): EngineRefusal => ({ message, param: version === '0.11.0' ? null : param })
  for (const [field, label] of [
    ['logprobs', 'sample'],
    ['prompt_logprobs', 'prompt'],
  ] as const) {
    const value = params[field]
    if (typeof value !== 'number' || value === 0) continue
    const wanted = value === -1 ? VOCAB_SIZE : value
    if (wanted > MAX_LOGPROBS)
      return refusal(`Requested ${label} logprobs of ${wanted}, which is greater than max allowed: ${MAX_LOGPROBS}`, field)
  }
  const bias = params.logit_bias
  if (isDict(bias)) {
    const invalid = Object.keys(bias)
      .map(Number)
      .filter((id) => id < 0 || id >= VOCAB_SIZE)
    if (invalid.length > 0) {
      return refusal(
        `token_id(s) [${invalid.join(', ')}] in logit_bias contain out-of-vocab token ids. Vocabulary size: ${VOCAB_SIZE}`,
        'logit_bias',
      )
    }
  }
  return null
}
