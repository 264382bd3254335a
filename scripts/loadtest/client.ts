// One streaming chat completion against an OpenAI-compatible endpoint, timed as a client sees it,
// and the model lookup. Works with vLLM directly or through the Worker: it relies only on the
// wire format both speak (../shared/vllm-wire-format.md).
import { createParser } from 'eventsource-parser'

export type Fetch = (url: string, init: RequestInit) => Promise<Response>

/**
 * Why a request failed: `http_<status>` (a non-2xx answer), `stream_error` (an `{"error":...}`
 * event), `incomplete` (the stream ended or broke without `data: [DONE]`), `malformed` (an event
 * that is not JSON: an SDK would throw there), `empty` (a finished stream without a single token),
 * `timeout` (--timeout-ms passed) and `network` (no answer at all: refused, reset, DNS).
 */
export type ErrorKind = `http_${number}` | 'stream_error' | 'incomplete' | 'malformed' | 'empty' | 'timeout' | 'network'

export interface RequestSuccess {
  ok: true
  /** From sending the request to the first chunk with reasoning or content text. */
  ttftMs: number
  /** Gaps between successive chunks with text. */
  itlMs: number[]
  /** usage.completion_tokens when the stream reported it, else the chunks with text. */
  completionTokens: number
  /** (tokens − 1) over the time from the first token to the last; null for a single token. */
  tokensPerSecond: number | null
}

export interface RequestFailure {
  ok: false
  kind: ErrorKind
  message: string
}

export type RequestOutcome = RequestSuccess | RequestFailure

export interface ChatTarget {
  /** The base URL without /v1. */
  baseUrl: string
  key: string | null
  model: string
  prompt: string
  maxTokens: number
  timeoutMs: number
}

export const endpointOf = (baseUrl: string, path: string) => `${baseUrl}/v1/${path}`

function headers(key: string | null): Record<string, string> {
  return { 'content-type': 'application/json', ...(key === null ? {} : { authorization: `Bearer ${key}` }) }
}

/** Sends one streaming request and reads it to the end, or until the timeout. */
export async function streamChat(target: ChatTarget, fetchImpl: Fetch): Promise<RequestOutcome> {
  // One deadline for the whole exchange, headers and body: a stalled stream is a timeout too.
  const signal = AbortSignal.timeout(target.timeoutMs)
  const body = JSON.stringify({
    model: target.model,
    messages: [{ role: 'user', content: target.prompt }],
    stream: true,
    // The usage chunk gives the true completion token count (</think> and EOS have no text chunk).
    stream_options: { include_usage: true },
    max_tokens: target.maxTokens,
  })
  const tracker = new StreamTracker(performance.now())
  let response: Response
  try {
    response = await fetchImpl(endpointOf(target.baseUrl, 'chat/completions'), {
      method: 'POST',
      headers: headers(target.key),
      body,
      signal,
    })
  } catch (error) {
    return thrown(error, signal, 'network', target.timeoutMs)
  }
  if (!response.ok) return { ok: false, kind: `http_${response.status}`, message: await errorMessage(response) }
  if (!response.body) return { ok: false, kind: 'incomplete', message: 'a 2xx answer without a body' }
  const reader = response.body.getReader()
  const decoder = new TextDecoder()
  let arrivedAt = 0
  const parser = createParser({ onEvent: (event) => tracker.onData(event.data, arrivedAt) })
  try {
    while (!tracker.ended) {
      const { done, value } = await reader.read()
      if (done) {
        parser.feed(decoder.decode())
        break
      }
      // Every event parsed from one read arrived together: the client could not see them sooner.
      arrivedAt = performance.now()
      parser.feed(decoder.decode(value, { stream: true }))
    }
  } catch (error) {
    return thrown(error, signal, 'incomplete', target.timeoutMs)
  } finally {
    reader.cancel().catch(() => {})
  }
  return tracker.outcome()
}

function thrown(error: unknown, signal: AbortSignal, otherwise: ErrorKind, timeoutMs: number): RequestFailure {
  if (signal.aborted) return { ok: false, kind: 'timeout', message: `no complete answer within ${timeoutMs} ms (--timeout-ms)` }
  const cause = error instanceof Error && error.cause instanceof Error ? `: ${error.cause.message}` : ''
  return { ok: false, kind: otherwise, message: `${error instanceof Error ? error.message : String(error)}${cause}` }
}

/** The message of an OpenAI- or vLLM-shaped error body, else the start of the body. */
async function errorMessage(response: Response): Promise<string> {
  const text = await response.text().catch(() => '')
  const status = `HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`
  return text.trim() === '' ? status : `${status}: ${messageIn(text) ?? text.slice(0, 200)}`
}

function messageIn(text: string): string | null {
  try {
    const parsed = JSON.parse(text) as { error?: unknown; message?: unknown }
    const error = parsed.error
    if (typeof error === 'string') return error // vLLM's 401: {"error":"Unauthorized"}
    if (typeof error === 'object' && error !== null && typeof (error as { message?: unknown }).message === 'string') {
      return (error as { message: string }).message
    }
    return typeof parsed.message === 'string' ? parsed.message : null // vLLM ≤ 0.10.0 errors
  } catch {
    return null
  }
}

interface Chunk {
  error?: unknown
  object?: unknown
  choices?: { delta?: Record<string, unknown>; finish_reason?: unknown }[]
  usage?: { completion_tokens?: unknown } | null
}

/** Text in a delta: reasoning under either vLLM name (by version), or the answer. */
function hasText(delta: Record<string, unknown> | undefined): boolean {
  if (!delta) return false
  return ['reasoning_content', 'reasoning', 'content'].some((field) => typeof delta[field] === 'string' && delta[field] !== '')
}

/** What one stream's events add up to; fed event by event with their arrival times. */
export class StreamTracker {
  readonly sentAt: number
  ended = false
  private done = false
  private failure: RequestFailure | null = null
  private arrivals: number[] = []
  /** The last chunk that was a generated token: one with text, or the finish chunk (EOS). */
  private lastTokenAt: number | null = null
  private usageTokens: number | null = null

  constructor(sentAt: number) {
    this.sentAt = sentAt
  }

  onData(data: string, at: number): void {
    if (this.ended) return
    if (data === '[DONE]') {
      this.done = true
      this.ended = true
      return
    }
    let chunk: Chunk
    try {
      chunk = JSON.parse(data) as Chunk
    } catch {
      this.fail('malformed', `an event that is not JSON: ${data.slice(0, 80)}`)
      return
    }
    if (typeof chunk !== 'object' || chunk === null)
      return this.fail('malformed', `an event that is not a JSON object: ${data.slice(0, 80)}`)
    if (chunk.error !== undefined || chunk.object === 'error') {
      return this.fail('stream_error', messageIn(data) ?? data.slice(0, 200))
    }
    const choice = chunk.choices?.[0]
    if (hasText(choice?.delta)) {
      this.arrivals.push(at)
      this.lastTokenAt = at
    } else if (choice?.finish_reason != null && this.arrivals.length > 0) {
      // The EOS token has no text but was generated: ending the span at the last text chunk would
      // count its token without its time and overstate tokens/s.
      this.lastTokenAt = at
    }
    const tokens = chunk.usage?.completion_tokens
    if (typeof tokens === 'number') this.usageTokens = tokens
  }

  private fail(kind: ErrorKind, message: string): void {
    this.failure = { ok: false, kind, message }
    this.ended = true
  }

  outcome(): RequestOutcome {
    if (this.failure) return this.failure
    if (!this.done) return { ok: false, kind: 'incomplete', message: 'the stream ended without data: [DONE]' }
    const [first] = this.arrivals
    if (first === undefined || this.lastTokenAt === null)
      return { ok: false, kind: 'empty', message: 'the stream finished without a single token' }
    const completionTokens = this.usageTokens ?? this.arrivals.length
    const span = this.lastTokenAt - first
    return {
      ok: true,
      ttftMs: first - this.sentAt,
      itlMs: this.arrivals.slice(1).map((at, index) => at - (this.arrivals[index] as number)),
      completionTokens,
      tokensPerSecond: completionTokens > 1 && span > 0 ? (completionTokens - 1) / (span / 1000) : null,
    }
  }
}

/** The first model the endpoint lists (GET /v1/models): what --model defaults to. */
export async function firstModel(baseUrl: string, key: string | null, timeoutMs: number, fetchImpl: Fetch): Promise<string> {
  const url = endpointOf(baseUrl, 'models')
  const fix = 'pass --model to name the model yourself'
  const signal = AbortSignal.timeout(timeoutMs)
  let response: Response
  try {
    response = await fetchImpl(url, { method: 'GET', headers: headers(key), signal })
  } catch (error) {
    throw new Error(`Could not list the models at ${url} (${thrown(error, signal, 'network', timeoutMs).message}). Check --url, or ${fix}.`)
  }
  if (!response.ok) {
    const hint =
      response.status === 401 || response.status === 403
        ? 'The endpoint refused the API key: check --key, LOADTEST_API_KEY or OPENAI_API_KEY.'
        : `Check --url, or ${fix}.`
    throw new Error(`Could not list the models at ${url}: ${await errorMessage(response)}. ${hint}`)
  }
  const listing = (await response.json().catch(() => null)) as { data?: { id?: unknown }[] } | null
  const id = listing?.data?.[0]?.id
  if (typeof id !== 'string' || id === '') throw new Error(`${url} lists no model; ${fix}.`)
  return id
}
