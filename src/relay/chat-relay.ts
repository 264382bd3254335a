import { requestBackground } from '../cache/request-background.ts'
import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'
import { ApiError, errorBody, toApiError } from '../errors.ts'
import type { Admission } from '../limits/admit.ts'
import type { EndReason } from '../ending.ts'
import { errorReason } from '../telemetry/context.ts'
import { liveGauges } from '../telemetry/counters.ts'
import type { RequestTrace } from '../telemetry/trace.ts'
import type { Attempt } from '../dispatch/attempts.ts'
import { ClientSseWriter, JSON_IDLE_FRAMES } from './client-writer.ts'
import { CompletionCollector, type CollectingSink } from './collect.ts'
import { runGeneration, type GenerationEnd } from './generation.ts'
import { openAttempts, type OpenAttemptsInput, type OpenedAttempts } from '../dispatch/open-attempts.ts'
import type { QueuePlace } from '../fleet/slots.ts'
import { SSE_HEADERS } from './sse.ts'
import { MAX_UNSETTLED_WRITES, relaySse, SsePassThrough, type StreamSink, type StreamSinkOptions } from './stream.ts'

/**
 * How long a request waits before its 200 is committed anyway: a stream for a backend to accept
 * it, a stream: false request for its whole answer. workerd tells a Worker that its client left
 * only when it writes to the response (request.signal does not fire while no response exists:
 * checked with the built Worker under Miniflare and under plain `workerd serve`), so without a
 * commit a client that hung up would keep its backend request running to the end. vLLM answers a
 * stream's headers at once, even while it queues, so for streams this only matters for a backend
 * that is slow to answer. After it, failures are error events (streams) or an error object
 * followed by a cut connection (stream: false, see answerCommitted), not statuses.
 */
export const COMMIT_WITHIN_MS = 1_000

/** What a chat request holds until it ends: its admission, its trace, and whether it counts as a stream. */
export interface ChatRequestHold {
  admission: Admission | null
  /** A speculative admission still being decided (src/routes/chat.ts); null when decided before the relay. */
  admitting: Promise<void> | null
  trace: RequestTrace
  /** Its 200 event stream is committed (counted in the streams-in-flight gauge). */
  streaming: boolean
  ended: boolean
  /** Why it ended, once it did: an admission decided after that is settled with it. */
  endReason: EndReason | null
}

export function newChatRequestHold(trace: RequestTrace): ChatRequestHold {
  return { admission: null, admitting: null, trace, streaming: false, ended: false, endReason: null }
}

/**
 * The one ending of a chat request, however it ended (refused, failed, finished, abandoned): the
 * admission settled with the tokens the backend reported, the trace finished, the stream gauge
 * updated. Call it exactly once per request.
 */
export function endChatRequest(hold: ChatRequestHold, ending: { reason: EndReason; status: number; end: GenerationEnd | null }): void {
  if (hold.ended) return
  hold.ended = true
  hold.endReason = ending.reason
  if (hold.streaming) liveGauges.streamsInFlight--
  const used = ending.end?.used ?? null
  hold.admission?.settle(used, ending.reason)
  hold.trace.completionTokens(used?.completionTokens ?? 0)
  hold.trace.finish(ending.reason, ending.status)
}

/** Ends a request that failed before (or instead of) an answer, with the error's status. */
export function endChatRequestWithError(hold: ChatRequestHold, error: unknown): void {
  endChatRequest(hold, { reason: errorReason(hold.trace, error), status: error instanceof ApiError ? error.status : 500, end: null })
}

/**
 * What the client gets of the one generation: the sink that collects a stream: false answer and
 * the sink that streams one. The chat completions format unless a route (the Responses API) says.
 */
export interface AnswerFormat {
  collector(): CollectingSink
  streamer(options: StreamSinkOptions): StreamSink
  /** The error object a stream: false answer that failed after its 200 carries; OpenAI's (errorBody) when unset. */
  errorBody?(error: ApiError): unknown
}

export const CHAT_FORMAT: AnswerFormat = {
  collector: () => new CompletionCollector(),
  streamer: (options) => new SsePassThrough(options),
}

export interface ChatRelayInput {
  body: Record<string, unknown>
  prefixKey: string | null
  gatewayMaxTokens: boolean
  /** The key may hedge (its record's `hedging` switch; the deployment's HEDGING decides too). */
  hedging: boolean
  /** The key's place in the edge queue, should every backend be full. */
  place: QueuePlace
  stream: boolean
  forwardUsage: boolean
  forwardChunkUsage: boolean
}

/**
 * Ranks the fleet's backends for this request and relays (stream: true) or collects (stream:
 * false) the answer of the first that takes it, failing over while nothing has reached the
 * client. Ends the request (endChatRequest) when the answer is over; a failure before a response
 * exists is thrown, and the caller ends the request with it.
 */
export async function relayChat(
  c: Context<AppEnv>,
  input: ChatRelayInput,
  hold: ChatRequestHold,
  format: AnswerFormat = CHAT_FORMAT,
): Promise<Response> {
  const config = c.get('config')
  const commitDue = Date.now() + COMMIT_WITHIN_MS
  // Aborts every upstream call of this request, and no attempt starts after it: the client left
  // (a failed write once the 200 is committed; request.signal where the runtime fires it before
  // a response exists, which workerd does not), or the answer no longer needs the backend.
  const gone = new AbortController()
  const clientSignal = c.req.raw.signal
  if (clientSignal.aborted) gone.abort('client_gone')
  else clientSignal.addEventListener('abort', () => gone.abort('client_gone'), { once: true })
  const opening = openAttempts({
    env: c.env,
    config,
    body: input.body,
    prefixKey: input.prefixKey,
    requestId: c.get('requestId'),
    gatewayMaxTokens: input.gatewayMaxTokens,
    signal: gone.signal,
    observer: hold.trace,
    background: requestBackground(c),
    hedging: input.hedging,
    place: input.place,
  } satisfies OpenAttemptsInput)
  if (hold.admitting) await untilAdmitted(hold, opening, gone)
  if (!input.stream) {
    return collectChat(c, { opening, hold, collector: format.collector(), gone, commitDue, errorBody: format.errorBody ?? errorBody })
  }

  const opened = await beforeCommit(opening, commitDue)
  // From here the 200 is committed, as vLLM itself does once it accepts, so the client's headers are
  // not on the first token's critical path. Until a data event is sent the relay can still move to
  // another backend; after that, failures are error events.
  hold.streaming = true
  liveGauges.streamsInFlight++
  const start = (opened ? Promise.resolve(opened) : opening).then(({ first, attempts }) => ({
    first,
    next: (attempt: Attempt, error: unknown) => attempts.next(attempt, error),
    hedge: attempts.hedgePlan(),
  }))
  const body = relaySse(start, {
    onEnd: (end) => endChatRequest(hold, { reason: end.reason, status: 200, end }),
    onClientGone: () => gone.abort('client_gone'),
    observer: hold.trace,
    forwardUsage: input.forwardUsage,
    forwardChunkUsage: input.forwardChunkUsage,
    keepAliveMs: config.keepAliveMs,
    sink: (options) => format.streamer(options),
    // Committed with no backend answer yet: the client may have left while it waited.
    probeAtOnce: opened === null,
  })
  hold.trace.headersReady()
  return c.body(body, 200, committedHeaders(SSE_HEADERS, hold))
}

/**
 * The headers of a 200 committed before any backend accepted: `x-edge-queue: waiting;
 * deadline=S` when the request waits in the edge queue at that moment (every backend full), so a
 * client can tell a queued request from one a backend is slow to answer, and knows the most it may
 * wait there (S seconds from its arrival in the queue) before a queue_timeout error event.
 */
function committedHeaders(headers: Readonly<Record<string, string>>, hold: ChatRequestHold): Record<string, string> {
  const deadlineMs = hold.trace.waitingAtEdge
  return deadlineMs === null ? { ...headers } : { ...headers, 'x-edge-queue': `waiting; deadline=${Math.round(deadlineMs / 1000)}` }
}

/**
 * Speculative admission: the backend call above started while the limiter decides; nothing reaches
 * the client (not even headers) before it has. A refusal aborts the backend call at once and is
 * what the client sees.
 */
async function untilAdmitted(hold: ChatRequestHold, opening: Promise<OpenedAttempts>, gone: AbortController): Promise<void> {
  // Awaited later, or never after a refusal: a backend failure meanwhile is not an unhandled rejection.
  opening.catch(() => {})
  try {
    await hold.admitting
  } catch (error) {
    gone.abort('refused')
    endChatRequest(hold, { reason: 'refused', status: error instanceof ApiError ? error.status : 500, end: null })
    throw error
  }
}

/** What `work` settled with if it did by `due` (a rejection is thrown), else null. */
async function beforeCommit<T>(work: Promise<T>, due: number): Promise<T | null> {
  const { promise: deadline, resolve } = Promise.withResolvers<null>()
  const timer = setTimeout(resolve, Math.max(0, due - Date.now()), null)
  try {
    return await Promise.race([work, deadline])
  } finally {
    clearTimeout(timer)
  }
}

interface Collecting {
  opening: Promise<OpenedAttempts>
  hold: ChatRequestHold
  collector: CollectingSink
  gone: AbortController
  commitDue: number
  errorBody: (error: ApiError) => unknown
}

/**
 * stream: false. Nothing but whitespace reaches the client before the end, so any backend failure
 * may fail over. An answer (or failure) ready by the commit deadline is the response, with its
 * status; a later one comes in a 200 committed at the deadline (answerCommitted).
 */
async function collectChat(c: Context<AppEnv>, collecting: Collecting): Promise<Response> {
  const { opening, hold, collector } = collecting
  const generation = opening.then(({ first, attempts }) =>
    runGeneration<Attempt>(first, (attempt, error) => attempts.next(attempt, error), collector, {
      afterBackendError: 'stop',
      observer: hold.trace,
      keepChunkUsage: true,
      hedge: attempts.hedgePlan(),
    }),
  )
  const end = await beforeCommit(generation, collecting.commitDue)
  if (!end) return answerCommitted(c, generation, collecting)
  if (end.error) {
    endChatRequest(hold, { reason: end.reason, status: end.error.status, end })
    throw end.error
  }
  const answer: unknown = await collector.answer(end)
  hold.trace.firstTokenDeliveredAtEnd()
  endChatRequest(hold, { reason: 'done', status: 200, end })
  return c.json(answer)
}

/**
 * A stream: false answer not ready by the commit deadline: the 200 is committed then, as a
 * stream's is, with `content-type: application/json`, so the gateway can write and learn that a
 * client left (its backend request is then aborted and its slot freed). Until the answer the body
 * is whitespace probes, which every JSON parser skips; then the answer, the same bytes as
 * uncommitted. A failure after the commit cannot change the status any more: the body is then
 * the error object every error response has, and the connection is cut instead of ended, so no
 * client takes it for an answer (an SDK that checks the status sees a broken response, which it
 * treats as it treats a 5xx, and a human reading the bytes sees why).
 */
function answerCommitted(c: Context<AppEnv>, generation: Promise<GenerationEnd>, collecting: Collecting): Response {
  const { hold, collector, gone } = collecting
  const writer = new ClientSseWriter({
    keepAliveMs: c.get('config').keepAliveMs,
    slowClient: 'wait',
    maxUntaken: MAX_UNSETTLED_WRITES,
    idleFrames: JSON_IDLE_FRAMES,
    probeAtOnce: true,
    onGone: () => gone.abort('client_gone'),
  })
  const fail = (error: ApiError, reason: EndReason, end: GenerationEnd | null) => {
    endChatRequest(hold, { reason, status: 200, end })
    writer.write(JSON.stringify(collecting.errorBody(error)))
    // workerd's pipe takes a write before the socket has it, and a cut drops what it holds: the
    // line break after the object is taken only once the object went out.
    writer.write('\n', () => writer.abort(new Error(`stream: false answer failed after its 200: ${error.code ?? error.status}`)))
  }
  void generation.then(
    async (end) => {
      if (!writer.open || end.reason === 'client_gone') {
        writer.abort()
        endChatRequest(hold, { reason: end.reason, status: 200, end })
      } else if (end.error) fail(end.error, end.reason, end)
      else {
        let answer: unknown
        try {
          answer = await collector.answer(end)
        } catch (error) {
          return fail(toApiError(error), 'backend_failed', end)
        }
        writer.write(JSON.stringify(answer))
        writer.close()
        hold.trace.firstTokenDeliveredAtEnd()
        endChatRequest(hold, { reason: 'done', status: 200, end })
      }
    },
    // No backend took the request (or the client left while none had).
    (error: unknown) => {
      const reason = errorReason(hold.trace, error)
      if (!writer.open || reason === 'client_gone') {
        writer.abort()
        endChatRequest(hold, { reason, status: 200, end: null })
      } else fail(toApiError(error), reason, null)
    },
  )
  hold.trace.headersReady()
  return c.body(writer.body, 200, committedHeaders(COMMITTED_JSON_HEADERS, hold))
}

/**
 * An answer committed before it exists must reach the client's socket write by write, or the
 * probes would not find a client that left: Cloudflare compresses `application/json` for clients
 * that accept gzip or brotli (and Miniflare does as Cloudflare does), and a compressor keeps a
 * probe's byte until it has more. `no-transform` is what turns that off on Cloudflare;
 * `content-encoding: identity` on Miniflare and workerd, which do not read `no-transform`.
 */
const COMMITTED_JSON_HEADERS: Readonly<Record<string, string>> = {
  'content-type': 'application/json',
  'content-encoding': 'identity',
  'cache-control': 'no-cache, no-transform',
}
