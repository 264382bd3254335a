// vLLM v0.20.2's Anthropic Messages API: POST /v1/messages and POST /v1/messages/count_tokens
// (vllm/entrypoints/anthropic/api_router.py). AnthropicServingMessages subclasses OpenAIServingChat
// and runs the chat path beneath (serving.py create_messages): the request becomes a chat request
// (anthropic-protocol.ts), the emulator's own chat handling runs it (v1.ts handleGeneration, so
// timing, faults, the scheduler, tokenization and prompt counts are the chat route's), and what
// it writes is converted on the way out (anthropic-convert.ts), as vLLM converts the chat stream
// generator's strings. v0.11.0 has no such route (vllm/entrypoints/anthropic/ arrived in v0.11.1).

import type { IncomingMessage, ServerResponse } from 'node:http'
import { MessageStreamConverter, messagesResponse } from './anthropic-convert.ts'
import { validateCountTokensRequest, validateMessagesRequest, type Validated } from './anthropic-protocol.ts'
import { toChatRequest } from './anthropic-to-chat.ts'
import { ENGINE_DEAD_MESSAGE } from './engine.ts'
import { errorBody, schemaErrorType, type ApiError } from './errors.ts'
import { parseJson, sendJson } from './http.ts'
import type { EmulatorOptions } from './options.ts'
import { preprocess, preprocessMs } from './preprocess.ts'
import { formatErrors, isDict, type Dict, type PydanticError } from './pydantic.ts'
import type { EmulatorState } from './state.ts'
import { validateGeneration } from './validate.ts'
import { handleGeneration, parseRequestBody, type Exchange } from './v1.ts'

export const ANTHROPIC_PATHS: ReadonlySet<string> = new Set(['/v1/messages', '/v1/messages/count_tokens'])

/**
 * The vLLM version emulated, when the options name one (`vllmVersion`, e.g. "0.11.0"); the route
 * exists from v0.11.1 on, so an older version answers it as an unknown path.
 */
function routeExists(options: EmulatorOptions): boolean {
  const version = (options as { vllmVersion?: unknown }).vllmVersion
  if (typeof version !== 'string') return true
  const [major = 0, minor = 0, patch = 0] = version.split('.').map((part) => Number.parseInt(part, 10) || 0)
  return major > 0 || minor > 11 || (minor === 11 && patch >= 1)
}

/** api_router.py translate_error_response: an ErrorResponse's type and message, its code as the status. */
function anthropicError(res: ServerResponse, status: number, type: string, message: string): void {
  sendJson(res, status, JSON.stringify({ type: 'error', error: { type, message } }))
}

/** The route's `except Exception`: 500 with type internal_error and str(e). */
function internalError(res: ServerResponse, message: string): void {
  anthropicError(res, 500, 'internal_error', message)
}

/** A schema failure: FastAPI's RequestValidationError, answered by the app-wide handler in the OpenAI shape. */
function schemaFailure(res: ServerResponse, options: EmulatorOptions, errors: readonly PydanticError[]): void {
  sendJson(
    res,
    400,
    errorBody(options.errorFormat, { status: 400, type: schemaErrorType(options.errorFormat), message: formatErrors(errors) }),
  )
}

/**
 * The chat path's refusals that vLLM v0.20.2 returns as an ErrorResponse (translated by the route):
 * the model check (serving.py _check_model, 404), render_chat's tool_choice and chat-template checks
 * (serve/render/serving.py), and the emulator's own directive errors and `refuse` fault. Every other
 * refusal is an exception there and reaches the route's `except Exception` as a 500 internal_error:
 * the dead engine (render_chat_request raises its dead_error; chat_completion_full_generator does not
 * catch EngineDeadError), the context length (renderers/params.py raises VLLMValidationError), the
 * SamplingParams checks (to_sampling_params raises), a request the engine refuses, and pydantic
 * failures of the ChatCompletionRequest built by the conversion.
 */
function isErrorResponse(error: ApiError): boolean {
  if (error.status === 404) return true
  if (/^Emulated refusal: |^Invalid emulator directive /.test(error.message)) return true
  return (
    error.status === 400 &&
    /^"auto" tool choice requires |^tool_choice=.* requires --tool-call-parser|^Chat template is passed with request/.test(error.message)
  )
}

/** The error an error response of the chat path carries (either error format, or Starlette's `detail`). */
function chatError(status: number, body: string): ApiError {
  const parsed = parseJson(body)
  const fields: Dict = isDict(parsed) ? (isDict(parsed.error) ? parsed.error : parsed) : {}
  const message = typeof fields.message === 'string' ? fields.message : typeof fields.detail === 'string' ? fields.detail : body
  return { status, type: typeof fields.type === 'string' ? fields.type : 'InternalServerError', message }
}

/** Answers an error of the chat path as the Anthropic route does. */
function sendChatError(res: ServerResponse, error: ApiError): void {
  if (error.status === 500 && error.message === ENGINE_DEAD_MESSAGE) return internalError(res, error.message)
  if (isErrorResponse(error)) return anthropicError(res, error.status, error.type, error.message)
  internalError(res, error.message)
}

/**
 * The response the chat path writes to, seen through the converters: a stream's 200 headers go out
 * as they are and each `data:` event is converted (message_stream_converter); a JSON answer is held
 * until it ends, then converted (messages_full_converter) or translated (an error).
 */
function convertingResponse(res: ServerResponse): ServerResponse {
  let status = 200
  let streaming = false
  let pending = ''
  const converter = new MessageStreamConverter()
  const text = (chunk: unknown) => (typeof chunk === 'string' ? chunk : Buffer.isBuffer(chunk) ? chunk.toString('utf8') : '')
  const feed = (chunk: string) => {
    pending += chunk
    let end = pending.indexOf('\n\n')
    while (end !== -1 && !converter.ended) {
      const item = pending.slice(0, end + 2)
      pending = pending.slice(end + 2)
      for (const event of converter.convert(item)) res.write(event)
      // The converter's generator is over: the response ends, and the chat generation with it.
      if (converter.ended) res.end()
      end = pending.indexOf('\n\n')
    }
  }
  const overrides: Record<string, unknown> = {
    writeHead(code: number, headers?: Record<string, string | number>) {
      status = code
      const type = String(headers?.['content-type'] ?? '')
      streaming = code === 200 && type.startsWith('text/event-stream')
      if (streaming) res.writeHead(code, headers)
      return proxy
    },
    flushHeaders() {
      if (streaming) res.flushHeaders()
    },
    write(chunk: unknown) {
      if (streaming && !res.writableEnded) feed(text(chunk))
      return true
    },
    end(chunk?: unknown) {
      if (res.writableEnded || res.destroyed) return proxy
      if (streaming) {
        if (chunk !== undefined) feed(text(chunk))
        if (!res.writableEnded) res.end()
        return proxy
      }
      const body = text(chunk)
      if (status !== 200) sendChatError(res, chatError(status, body))
      else {
        const parsed = parseJson(body)
        // A body the `malformed_after` fault cut in half cannot be converted: it goes out as it is.
        if (isDict(parsed)) sendJson(res, 200, JSON.stringify(messagesResponse(parsed)))
        else sendJson(res, 200, body)
      }
      return proxy
    },
  }
  const proxy: ServerResponse = new Proxy(res, {
    get(target, key, receiver) {
      if (typeof key === 'string' && Object.hasOwn(overrides, key)) return overrides[key]
      const value: unknown = Reflect.get(target, key, receiver === proxy ? target : receiver)
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value
    },
  })
  return proxy
}

function parse<T>(options: EmulatorOptions, exchange: Exchange, validate: (body: unknown) => Validated<T>): T | null {
  const { req, res, rawBody } = exchange
  // validate_json_request (the routes' dependency) checks the media type before the body is read.
  const parsed = parseRequestBody(options, req, rawBody)
  if (!parsed.ok) {
    sendJson(res, parsed.error.status, errorBody(options.errorFormat, parsed.error))
    return null
  }
  const validated = validate(parsed.body)
  if (validated.ok) return validated.request
  schemaFailure(res, options, validated.errors)
  return null
}

/** create_messages: the converted request through the chat path, its output converted. */
async function createMessages(state: EmulatorState, options: EmulatorOptions, exchange: Exchange): Promise<void> {
  const request = parse(options, exchange, validateMessagesRequest)
  if (request === null) return
  const chat = toChatRequest(request)
  await handleGeneration(state, options, 'chat', { ...exchange, rawBody: JSON.stringify(chat), res: convertingResponse(exchange.res) })
}

/**
 * count_tokens: the converted request rendered as the chat path renders it (render_chat_request:
 * the model check, the dead engine, the template with its generation prompt, the tokenizer, the
 * length check), answered with the prompt's token count.
 */
async function countTokens(state: EmulatorState, options: EmulatorOptions, exchange: Exchange): Promise<void> {
  const request = parse(options, exchange, validateCountTokensRequest)
  if (request === null) return
  const { res } = exchange
  const validated = validateGeneration(options, 'chat', toChatRequest(request))
  // The dead engine is checked after the model (render_chat_request), before the render's own refusals.
  const dead = state.engine.dead && (validated.ok || validated.error.type === 'BadRequestError')
  if (dead) return internalError(res, ENGINE_DEAD_MESSAGE)
  const preprocessed = validated.ok ? validated.request.preprocessed : validated.preprocessed
  if (preprocessed !== undefined && preprocessMs(options.preprocessMsPerToken, preprocessed) > 0) {
    await preprocess(state.apiLoop, options.preprocessMsPerToken, preprocessed)
    if (res.destroyed) return
  }
  if (!validated.ok) return sendChatError(res, validated.error)
  const tokens = validated.request.promptTokens
  sendJson(res, 200, JSON.stringify({ input_tokens: tokens, context_management: { original_input_tokens: tokens } }))
}

/** The two routes, behind the /v1 key check of v1.ts (AuthenticationMiddleware: a Bearer key only). */
export async function handleAnthropic(state: EmulatorState, req: IncomingMessage, path: string, exchange: Exchange): Promise<void> {
  const options = state.options
  const { res } = exchange
  if (!routeExists(options)) return sendJson(res, 404, JSON.stringify({ detail: 'Not Found' }))
  if (req.method !== 'POST') return sendJson(res, 405, JSON.stringify({ detail: 'Method Not Allowed' }))
  if (path === '/v1/messages') return createMessages(state, options, exchange)
  return countTokens(state, options, exchange)
}
