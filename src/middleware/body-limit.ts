import type { HonoRequest, MiddlewareHandler } from 'hono'
import type { AppEnv } from '../env.ts'
import { ApiError } from '../errors.ts'

export interface BodyLimits {
  maxBytes: number
  /** Longest wait for the next bytes of the body (from the start for the first ones). */
  idleMs: number
  /** Bound on reading the whole body. */
  totalMs: number
}

/**
 * Reads the whole request body before the handler runs, within MAX_BODY_BYTES (413), a deadline
 * after the last bytes and one on the whole body (408), so a slow or stalled upload cannot hold
 * the Worker, and a body that breaks off (a Content-Length it does not reach, a chunked body
 * without its last chunk, a bad chunk size) is a 400, never a 500. The handler reads the bytes
 * through Hono's body cache (c.req.text(), json(), parseBody()) as if from the request.
 */
export const limitBody: MiddlewareHandler<AppEnv> = async function limitBody(c, next) {
  const config = c.get('config')
  const limits = { maxBytes: config.maxBodyBytes, idleMs: config.bodyIdleTimeoutMs, totalMs: config.bodyTimeoutMs }
  const declared = c.req.header('content-length')
  // A declared length over the limit is refused before a byte is read.
  if (declared !== undefined && Number(declared) > limits.maxBytes) throw tooLarge(limits.maxBytes)
  const body = c.req.raw.body
  if (body) cacheBody(c.req, await readBody(body, limits))
  await next()
}

/**
 * Hono keeps a body it read as a promise per form (text, json, ...) and derives the others from
 * it; its type declares the values without the promise, hence the cast.
 */
function cacheBody(request: HonoRequest, bytes: Uint8Array<ArrayBuffer>): void {
  const cache = request.bodyCache as Record<string, Promise<unknown>>
  cache.arrayBuffer = Promise.resolve(bytes.buffer)
}

/** The body's bytes, or an ApiError: 413 over the limit, 408 past a deadline, 400 when it broke off. */
export async function readBody(body: ReadableStream<Uint8Array>, limits: BodyLimits): Promise<Uint8Array<ArrayBuffer>> {
  const reader = body.getReader()
  const startedAt = Date.now()
  const chunks: Uint8Array[] = []
  let size = 0
  let done = false
  try {
    while (!done) {
      const now = Date.now()
      const result = await withDeadline(reader.read(), Math.min(limits.idleMs, startedAt + limits.totalMs - now))
      if (result === TIMED_OUT) throw timedOut(Date.now() - startedAt >= limits.totalMs ? 'total' : 'idle', limits)
      done = result.done
      if (result.value) {
        size += result.value.byteLength
        if (size > limits.maxBytes) throw tooLarge(limits.maxBytes)
        chunks.push(result.value)
      }
    }
  } catch (error) {
    // workerd rejects the read with a plain TypeError when the body breaks off; its message says
    // nothing a client needs (and nothing of the body is echoed).
    throw error instanceof ApiError ? error : incomplete()
  } finally {
    if (!done) reader.cancel().catch(() => {})
  }
  return concat(chunks, size)
}

const TIMED_OUT = Symbol('timed out')

/** The promise's value, or TIMED_OUT after `ms`; the timer is cleared either way. */
async function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let timer: ReturnType<typeof setTimeout> | null = null
  const deadline = new Promise<typeof TIMED_OUT>((resolve) => {
    timer = setTimeout(() => resolve(TIMED_OUT), Math.max(0, ms))
  })
  try {
    return await Promise.race([promise, deadline])
  } finally {
    clearTimeout(timer)
  }
}

function concat(chunks: readonly Uint8Array[], size: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(size)
  let offset = 0
  for (const chunk of chunks) {
    bytes.set(chunk, offset)
    offset += chunk.byteLength
  }
  return bytes
}

function tooLarge(maxBytes: number): ApiError {
  return new ApiError(413, `Request body too large: the limit is ${maxBytes} bytes.`, { code: 'request_too_large' })
}

function incomplete(): ApiError {
  return new ApiError(400, 'The request body ended before it was complete (or its framing is malformed).', {
    code: 'incomplete_body',
  })
}

function timedOut(which: 'idle' | 'total', limits: BodyLimits): ApiError {
  const message =
    which === 'idle'
      ? `The request body stalled: no bytes for ${limits.idleMs} ms.`
      : `The request body was not complete within ${limits.totalMs} ms.`
  return new ApiError(408, message, { code: 'request_body_timeout', headers: { connection: 'close' } })
}
