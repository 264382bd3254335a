import { requestBackground } from '../cache/request-background.ts'
import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'
import { ApiError } from '../errors.ts'
import type { Admission } from '../limits/admit.ts'
import type { Outcome } from '../telemetry/record.ts'
import { errorOutcome } from '../telemetry/context.ts'
import { liveGauges } from '../telemetry/counters.ts'
import type { RequestTrace } from '../telemetry/trace.ts'
import type { Attempt } from '../dispatch/attempts.ts'
import { CompletionCollector, type CollectingSink } from './collect.ts'
import { runGeneration, type GenerationEnd } from './generation.ts'
import { openAttempts, type OpenAttemptsInput, type OpenedAttempts } from '../dispatch/open-attempts.ts'
import { SSE_HEADERS } from './sse.ts'
import { relaySse, SsePassThrough, type StreamSink, type StreamSinkOptions } from './stream.ts'

/**
 * How long a streaming request waits for a backend to accept it before its 200 is committed
 * anyway. vLLM answers headers at once, even while a request queues, so this only matters for a
 * backend that is slow to answer; committing lets the gateway write, and workerd tells a Worker
 * that its client left only when it writes. After it, failures are error events, not statuses.
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
}

export function newChatRequestHold(trace: RequestTrace): ChatRequestHold {
  return { admission: null, admitting: null, trace, streaming: false, ended: false }
}

/**
 * The one ending of a chat request, however it ended (refused, failed, finished, abandoned): the
 * admission settled with the tokens the backend reported, the trace finished, the stream gauge
 * updated. Call it exactly once per request.
 */
export function endChatRequest(hold: ChatRequestHold, ending: { outcome: Outcome; status: number; end: GenerationEnd | null }): void {
  if (hold.ended) return
  hold.ended = true
  if (hold.streaming) liveGauges.streamsInFlight--
  const used = ending.end?.used ?? null
  hold.admission?.settle(used)
  hold.trace.completionTokens(used?.completionTokens ?? 0)
  hold.trace.finish(ending.outcome, ending.status)
}

/** Ends a request that failed before (or instead of) an answer, with the error's status. */
export function endChatRequestWithError(hold: ChatRequestHold, error: unknown): void {
  endChatRequest(hold, { outcome: errorOutcome(hold.trace, error), status: error instanceof ApiError ? error.status : 500, end: null })
}

/**
 * What the client gets of the one generation: the sink that collects a stream: false answer and
 * the sink that streams one. The chat completions format unless a route (the Responses API) says.
 */
export interface AnswerFormat {
  collector(): CollectingSink
  streamer(options: StreamSinkOptions): StreamSink
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
  // Aborts every upstream call of this request: the client left (request.signal before the
  // response exists, a failed write after), or the answer no longer needs the backend.
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
  } satisfies OpenAttemptsInput)
  if (hold.admitting) await untilAdmitted(hold, opening, gone)
  if (!input.stream) return collectChat(c, await opening, hold, format.collector())

  const opened = await withinCommitDeadline(opening)
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
    onEnd: (end) => endChatRequest(hold, { outcome: end.outcome, status: 200, end }),
    onClientGone: () => gone.abort('client_gone'),
    observer: hold.trace,
    forwardUsage: input.forwardUsage,
    forwardChunkUsage: input.forwardChunkUsage,
    keepAliveMs: config.keepAliveMs,
    sink: (options) => format.streamer(options),
  })
  hold.trace.headersReady()
  return c.body(body, 200, SSE_HEADERS)
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
    endChatRequest(hold, { outcome: 'refused', status: error instanceof ApiError ? error.status : 500, end: null })
    throw error
  }
}

/** The accepted attempts, or null when none came within COMMIT_WITHIN_MS; a refusal before then is thrown. */
async function withinCommitDeadline(opening: Promise<OpenedAttempts>): Promise<OpenedAttempts | null> {
  const { promise: deadline, resolve } = Promise.withResolvers<null>()
  const timer = setTimeout(resolve, COMMIT_WITHIN_MS, null)
  try {
    return await Promise.race([opening, deadline])
  } finally {
    clearTimeout(timer)
  }
}

/** stream: false: nothing reaches the client before the end, so any backend failure may fail over. */
async function collectChat(
  c: Context<AppEnv>,
  opened: OpenedAttempts,
  hold: ChatRequestHold,
  collector: CollectingSink,
): Promise<Response> {
  const { first, attempts } = opened
  const end = await runGeneration<Attempt>(first, (attempt, error) => attempts.next(attempt, error), collector, {
    afterBackendError: 'stop',
    observer: hold.trace,
    keepChunkUsage: true,
    hedge: attempts.hedgePlan(),
  })
  if (end.error) {
    endChatRequest(hold, { outcome: end.outcome, status: end.error.status, end })
    throw end.error
  }
  const answer = collector.answer(end)
  hold.trace.firstTokenDeliveredAtEnd()
  endChatRequest(hold, { outcome: 'ok', status: 200, end })
  return c.json(answer)
}
