import type { Context } from 'hono'
import { HTTPException } from 'hono/http-exception'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import type { ErrorCode } from './error-codes.ts'

export { ERROR_CODES, type ErrorCode } from './error-codes.ts'

/**
 * One error type for everything a client can see. It renders as OpenAI's error body,
 * `{"error":{"message","type","param","code"}}`, which the official SDKs turn into their typed
 * `APIError` subclasses by status.
 */
export class ApiError extends Error {
  readonly status: ContentfulStatusCode
  readonly type: string
  readonly code: ErrorCode | null
  readonly param: string | null
  readonly headers: Record<string, string>

  constructor(
    status: ContentfulStatusCode,
    message: string,
    options: { type?: string; code?: ErrorCode | null; param?: string | null; headers?: Record<string, string> } = {},
  ) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.type = options.type ?? errorTypeFor(status)
    this.code = options.code ?? null
    this.param = options.param ?? null
    this.headers = options.headers ?? {}
  }
}

/** OpenAI's error `type` vocabulary, by status. One table, so every route says the same. */
export function errorTypeFor(status: number): string {
  if (status === 401) return 'authentication_error'
  if (status === 403) return 'permission_error'
  if (status === 404) return 'not_found_error'
  if (status === 429) return 'rate_limit_error'
  if (status === 504) return 'timeout_error'
  if (status >= 500) return 'server_error'
  return 'invalid_request_error'
}

/** A deployment setting that cannot work: 500, saying which and why (never a secret's value). */
export function misconfigured(message: string): ApiError {
  return new ApiError(500, `Gateway misconfigured: ${message}`, { code: 'gateway_misconfigured' })
}

export interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | number | null }
}

export function errorBody(error: ApiError): ErrorBody {
  return { error: { message: error.message, type: error.type, param: error.param, code: error.code } }
}

/**
 * The error event that ends a stream which has already started. It copies vLLM's own mid-stream
 * error (Python's json.dumps spacing, the HTTP status as a numeric `code`) so a client written
 * against vLLM reads ours and vLLM's the same way; `data: [DONE]` follows it.
 */
export function streamErrorJson(error: ApiError): string {
  const json = JSON.stringify
  return `{"error": {"message": ${json(error.message)}, "type": ${json(error.type)}, "param": ${json(error.param)}, "code": ${error.status}}}`
}

/** The shape of an error body: OpenAI's (every route but the Messages API's) or Anthropic's. */
export type ErrorFormat = 'openai' | 'anthropic'

/**
 * Anthropic's error `type` by status (docs.claude.com/en/api/errors): its table, with
 * invalid_request_error for the other 4xx as Anthropic says it does, and for the gateway's own
 * 5xx, whose status is kept: 503 (the fleet full or down) is overloaded_error, what Anthropic's 529
 * says; the other 5xx api_error.
 */
export function anthropicErrorTypeFor(status: number): string {
  if (status === 401) return 'authentication_error'
  if (status === 403) return 'permission_error'
  if (status === 404) return 'not_found_error'
  if (status === 413) return 'request_too_large'
  if (status === 429) return 'rate_limit_error'
  if (status === 503 || status === 529) return 'overloaded_error'
  if (status >= 500) return 'api_error'
  return 'invalid_request_error'
}

export interface AnthropicErrorBody {
  type: 'error'
  error: { type: string; message: string }
  request_id?: string
}

/** Anthropic's error object (an HTTP error's body, and the data of a stream's `event: error`). */
export function anthropicErrorBody(error: ApiError, requestId?: string): AnthropicErrorBody {
  const body: AnthropicErrorBody = { type: 'error', error: { type: anthropicErrorTypeFor(error.status), message: error.message } }
  if (requestId) body.request_id = requestId
  return body
}

/**
 * The single error renderer (app.onError). Unknown errors become a 500 that reveals nothing. The
 * body is OpenAI's, or Anthropic's where the request's route set `errorFormat` (the Messages API);
 * status and headers are the same either way.
 */
export function renderError(err: unknown, c: Context): Response {
  const error = toApiError(err)
  if (error.status >= 500 && !(err instanceof ApiError)) {
    // Only the error's class: messages of runtime errors can quote request bodies.
    console.error(JSON.stringify({ event: 'unhandled_error', requestId: c.get('requestId'), name: errorName(err) }))
  }
  const format = (c.get('errorFormat') as ErrorFormat | undefined) ?? 'openai'
  const body = format === 'anthropic' ? anthropicErrorBody(error, c.get('requestId') as string | undefined) : errorBody(error)
  return c.json(body, error.status, error.headers)
}

/**
 * The one fallback for errors that are not ApiErrors (a bug, a runtime failure): the HTTP
 * response, a stream session's refusal and its `error` event all go through it, so an unknown
 * failure reads the same everywhere, a 500 `internal_error` that reveals nothing about it.
 */
export function toApiError(err: unknown): ApiError {
  if (err instanceof ApiError) return err
  if (err instanceof HTTPException) {
    const status = err.status as ContentfulStatusCode
    return new ApiError(status, err.status === 413 ? 'Request body too large.' : err.message || 'Request failed.')
  }
  return new ApiError(500, 'The gateway failed to handle the request.', { code: 'internal_error' })
}

function errorName(err: unknown): string {
  return err instanceof Error ? err.name : typeof err
}
