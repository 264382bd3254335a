import type { ContentfulStatusCode } from 'hono/utils/http-status'
import { ApiError } from '../errors.ts'
import { backendHeaders, type BackendCredentials } from '../fleet/access.ts'
import type { BackendRecord } from '../fleet/records.ts'
import { readContextRefusal } from './context-refusal.ts'
import type { UpstreamCall } from './upstream-call.ts'

/** Longest upstream error body read; vLLM's are a few hundred bytes. */
const MAX_ERROR_BODY_BYTES = 16 * 1024

export interface UpstreamRequest {
  backend: BackendRecord
  body: Record<string, unknown>
  credentials: BackendCredentials
  /** This attempt's own id (newUpstreamRequestId), never the client's X-Request-Id. */
  requestId: string
}

/**
 * A fresh id for one upstream attempt, sent as X-Request-Id. vLLM makes it the request's engine
 * id and refuses a second running request with the same one ("Request id ... already running.",
 * `vllm/v1/engine/output_processor.py`), so a client's own id, which two requests may share,
 * never goes upstream: it stays the gateway's correlation id.
 */
export function newUpstreamRequestId(): string {
  return crypto.randomUUID().replaceAll('-', '')
}

/**
 * Sends the chat request to a backend and returns its event stream. The headers are built here
 * from nothing: no client header (Authorization, hop-by-hop, cookies) is ever forwarded, and the
 * backend's own credentials are added (vLLM key, Cloudflare Access token). Any refusal becomes an
 * ApiError with the status the client gets.
 */
export async function openUpstream(request: UpstreamRequest, call: UpstreamCall): Promise<ReadableStream<Uint8Array>> {
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    accept: 'text/event-stream',
    'x-request-id': request.requestId,
    ...backendHeaders(request.backend, request.credentials),
  }

  let response: Response
  try {
    response = await fetch(`${request.backend.url}/v1/chat/completions`, {
      method: 'POST',
      headers,
      body: JSON.stringify(request.body),
      signal: call.signal,
      // vLLM never redirects; Cloudflare Access answers a missing or refused token with a redirect
      // to its login page, which must not be followed (and its HTML taken for the backend's answer).
      redirect: 'manual',
    })
  } catch (error) {
    throw call.stopError() ?? unreachable(error)
  }
  call.headersArrived()
  if (!response.ok) throw await refusal(response)
  const type = response.headers.get('content-type') ?? ''
  if (!type.startsWith('text/event-stream') || !response.body) {
    await response.body?.cancel()
    throw new ApiError(502, 'The backend answered with something other than an event stream.', {
      code: 'upstream_bad_response',
    })
  }
  return response.body
}

function unreachable(error: unknown): ApiError {
  const name = error instanceof Error ? error.name : 'Error'
  return new ApiError(502, `The backend could not be reached (${name}).`, { code: 'upstream_unreachable' })
}

/**
 * vLLM's error bodies come in two eras: `{"error":{"message",...}}` (v0.10.1 and later) and
 * `{"object":"error","message",...}` (earlier). Both keep their message and status. A 401/403
 * means the gateway's backend key is wrong, and a redirect that Cloudflare Access refused its
 * service token: our fault, not the caller's, so 502.
 */
async function refusal(response: Response): Promise<ApiError> {
  const message = extractMessage(await readBounded(response)) ?? `The backend refused the request (HTTP ${response.status}).`
  if (response.status === 401 || response.status === 403 || (response.status >= 300 && response.status < 400)) {
    return new ApiError(502, "The backend rejected the gateway's credentials.", { code: 'upstream_auth_failed' })
  }
  const status = (response.status >= 400 && response.status <= 599 ? response.status : 502) as ContentfulStatusCode
  if (status === 400 && readContextRefusal(message)) {
    // vLLM's exact count and text, named as OpenAI names a context overflow.
    return new ApiError(400, message, { param: 'messages', code: 'context_length_exceeded' })
  }
  const code = status === 404 ? 'model_not_found' : status >= 500 ? 'upstream_error' : null
  return new ApiError(status, message, { code })
}

async function readBounded(response: Response): Promise<string> {
  if (!response.body) return ''
  const reader = response.body.getReader()
  const decoder = new TextDecoder()
  let text = ''
  try {
    for (;;) {
      const { done, value } = await reader.read()
      if (done) break
      text += decoder.decode(value, { stream: true })
      if (text.length > MAX_ERROR_BODY_BYTES) break
    }
  } catch {
    // A body cut off mid-way still has whatever message arrived.
  } finally {
    reader.cancel().catch(() => {})
  }
  return text
}

function extractMessage(text: string): string | null {
  try {
    const body = JSON.parse(text) as { message?: unknown; error?: { message?: unknown } | string }
    const nested = typeof body.error === 'object' && body.error !== null ? body.error.message : undefined
    const message = nested ?? body.message
    return typeof message === 'string' && message !== '' ? message : null
  } catch {
    return null
  }
}
