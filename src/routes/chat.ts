import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'
import { ApiError } from '../errors.ts'
import { pickBackend } from '../fleet/backends.ts'
import { collectCompletion } from '../relay/collect.ts'
import { SSE_HEADERS } from '../relay/sse.ts'
import { relaySse } from '../relay/stream.ts'
import { openUpstream } from '../relay/upstream.ts'
import { UpstreamCall } from '../relay/upstream-call.ts'
import { parseChatRequest, type ChatRequest } from '../schema/chat-request.ts'
import { applyContextBudget } from '../schema/context-budget.ts'
import { readJsonBody } from '../schema/read-json.ts'

/** POST /v1/chat/completions: validate, pick a backend, then relay (stream) or collect (JSON). */
export async function chatCompletions(c: Context<AppEnv>): Promise<Response> {
  const config = c.get('config')
  const parsed = parseChatRequest(await readJsonBody(c))
  if (parsed.model != null && !config.modelNames.has(parsed.model)) {
    throw new ApiError(404, `The model '${parsed.model}' does not exist.`, { param: 'model', code: 'model_not_found' })
  }
  const { request } = applyContextBudget(parsed, {
    maxModelLen: config.maxModelLen,
    maxOutputTokens: c.get('principal').record.limits.maxOutputTokens,
  })

  const call = new UpstreamCall(c.req.raw.signal, {
    firstEventMs: config.firstEventTimeoutMs,
    idleMs: config.eventIdleTimeoutMs,
  })
  const upstream = await openUpstream(
    {
      backend: pickBackend(config.backends),
      body: upstreamBody(request, config.modelId),
      apiKey: config.backendApiKey,
      requestId: c.get('requestId'),
    },
    call,
  ).catch((error: unknown) => {
    call.end()
    throw error
  })

  if (!request.stream) return c.json(await collectCompletion(upstream, call))

  // The backend accepted the request: commit the 200 now, as vLLM itself does, so the client's
  // headers are not on the first token's critical path. Later failures are error events.
  const body = relaySse(upstream, {
    call,
    forwardUsage: request.stream_options?.include_usage === true,
    keepAliveMs: config.keepAliveMs,
  })
  return new Response(body, { headers: SSE_HEADERS })
}

/**
 * The body sent to vLLM. It always streams and always asks for usage, so the gateway knows every
 * request's token count; the relay drops the usage chunk unless the client asked for it.
 */
function upstreamBody(request: ChatRequest, modelId: string): Record<string, unknown> {
  const continuous = request.stream_options?.continuous_usage_stats === true
  return {
    ...request,
    model: modelId,
    stream: true,
    stream_options: continuous ? { include_usage: true, continuous_usage_stats: true } : { include_usage: true },
  }
}
