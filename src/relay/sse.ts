import { streamErrorJson, type ApiError } from '../errors.ts'

/** Response headers of every event stream the gateway sends. */
export const SSE_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  // Tells nginx-style proxies between us and the client not to buffer the stream.
  'x-accel-buffering': 'no',
}

export const DONE_FRAME = 'data: [DONE]\n\n'

/** An SSE comment: EventSource and the SDKs ignore it, idle-timeout proxies see traffic. */
export const KEEPALIVE_FRAME = ': keep-alive\n\n'

/** The smallest SSE comment: written after a second of silence to learn whether the client is still there. */
export const PROBE_FRAME = ':\n\n'

/** One data event. A payload with line breaks needs one `data:` line per line to survive SSE. */
export function dataFrame(data: string): string {
  return data.includes('\n') ? `data: ${data.replaceAll('\n', '\ndata: ')}\n\n` : `data: ${data}\n\n`
}

export function streamErrorFrame(error: ApiError): string {
  return `data: ${streamErrorJson(error)}\n\n`
}

/**
 * A backend's error event as the client gets it: the request's own fault as vLLM sent it; a
 * backend fault (see isBackendFault) in the gateway's words with its 5xx code, because vLLM
 * v0.11.0 labels even a dead engine "BadRequestError", 400.
 */
export function backendErrorFrame(error: ApiError, data: string): string {
  return error.status >= 500 || error.status === 429 ? streamErrorFrame(error) : dataFrame(data)
}
