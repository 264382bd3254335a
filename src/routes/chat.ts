import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'
import { admitRequest, type Admission } from '../limits/admit.ts'
import { prefixKeyOf } from '../fleet/select.ts'
import type { Attempt, UpstreamAttempts } from '../relay/attempts.ts'
import { openAttempts } from '../relay/open-attempts.ts'
import { collectCompletion, type ChatCompletion } from '../relay/collect.ts'
import { SSE_HEADERS } from '../relay/sse.ts'
import { relaySse } from '../relay/stream.ts'
import type { UpstreamChatRequest } from '../normalize/index.ts'
import { prepareChatRequest, upstreamBody } from '../chat/prepare.ts'
import { finishWithError, startRequestTrace } from '../telemetry/context.ts'
import { liveGauges } from '../telemetry/counters.ts'
import type { RequestTrace } from '../telemetry/trace.ts'

/**
 * POST /v1/chat/completions: validate and fit the request, admit it under the key's limits, relay
 * it. Every request is traced, refused ones included, and its record sent to the telemetry.
 */
export async function chatCompletions(c: Context<AppEnv>): Promise<Response> {
  const trace = startRequestTrace(c)
  let admission: Admission | null = null
  try {
    const prepared = await prepareChatRequest(c)
    admission = await admitRequest(c, prepared.reserveTokens)
    return await relayChat(c, prepared.request, admission, trace, { gatewayMaxTokens: prepared.gatewayMaxTokens })
  } catch (error) {
    // Whatever failed before the relay took the request over; settling twice is harmless.
    admission?.settle(null)
    finishWithError(trace, error)
    throw error
  }
}

/**
 * Ranks the fleet's backends for this request and relays (stream: true) or collects (stream:
 * false) the answer of the first that takes it, failing over while nothing has reached the client.
 * The admission is settled once, when the request is over, with the tokens the backend reported.
 */
export async function relayChat(
  c: Context<AppEnv>,
  request: UpstreamChatRequest,
  admission: Admission,
  trace: RequestTrace,
  options: { gatewayMaxTokens?: boolean } = {},
): Promise<Response> {
  const config = c.get('config')
  const { first, attempts } = await openAttempts({
    env: c.env,
    config,
    body: upstreamBody(request, config.modelId),
    prefixKey: prefixKeyOf(request.messages),
    requestId: c.get('requestId'),
    gatewayMaxTokens: options.gatewayMaxTokens ?? false,
    signal: c.req.raw.signal,
    observer: trace,
  })

  if (!request.stream) {
    const completion = await collectWithFailover(first, attempts, admission, trace)
    trace.completionTokens(completion.usage?.completion_tokens ?? 0)
    trace.firstTokenDelivered()
    trace.finish('ok', 200)
    return c.json(completion)
  }

  // The backend accepted the request: commit the 200 now, as vLLM itself does, so the client's
  // headers are not on the first token's critical path. Until a data event is sent the relay can
  // still move to another backend; after that, failures are error events.
  liveGauges.streamsInFlight++
  const body = relaySse(first, {
    next: (attempt, error) => attempts.next(attempt, error),
    onEnd: (used, outcome) => {
      liveGauges.streamsInFlight--
      admission.settle(used)
      trace.completionTokens(used?.completionTokens ?? 0)
      trace.finish(outcome, 200)
    },
    observer: trace,
    forwardUsage: request.stream_options?.include_usage === true,
    forwardChunkUsage: request.stream_options?.continuous_usage_stats === true,
    keepAliveMs: config.keepAliveMs,
  })
  trace.headersReady()
  return c.body(body, 200, SSE_HEADERS)
}

/** stream: false: nothing reaches the client before the end, so any backend failure may fail over. */
async function collectWithFailover(first: Attempt, attempts: UpstreamAttempts, admission: Admission, trace: RequestTrace): Promise<ChatCompletion> {
  let attempt = first
  for (;;) {
    try {
      const completion = await collectCompletion(attempt, trace)
      admission.settle(attempt.call.used)
      return completion
    } catch (error) {
      const next = await attempts.next(attempt, error)
      if (!next) {
        admission.settle(attempt.call.used)
        throw error
      }
      attempt = next
    }
  }
}
