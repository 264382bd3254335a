import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'
import { ApiError } from '../errors.ts'
import { pickBackend } from '../fleet/backends.ts'
import { collectCompletion } from '../relay/collect.ts'
import { SSE_HEADERS } from '../relay/sse.ts'
import { relaySse } from '../relay/stream.ts'
import { openUpstream } from '../relay/upstream.ts'
import { UpstreamCall } from '../relay/upstream-call.ts'
import { normalizeChatRequest, resolveRules, type UpstreamChatRequest } from '../normalize/index.ts'
import { parseChatRequest } from '../schema/chat-request.ts'
import { applyContextBudget } from '../schema/context-budget.ts'
import { readJsonBody } from '../schema/read-json.ts'

/** POST /v1/chat/completions: validate and fit the request, then relay it. */
export async function chatCompletions(c: Context<AppEnv>): Promise<Response> {
  const request = await prepareChatRequest(c)
  return relayChat(c, request)
}

/**
 * Checks the body, maps the model name, applies the DeepSeek-R1 prompt rules (telling the client
 * which ones changed its request in `x-prompt-rules`) and fits the result into the context.
 */
async function prepareChatRequest(c: Context<AppEnv>): Promise<UpstreamChatRequest> {
  const config = c.get('config')
  const { record } = c.get('principal')
  const parsed = parseChatRequest(await readJsonBody(c))
  if (parsed.model != null && !config.modelNames.has(parsed.model)) {
    throw new ApiError(404, `The model '${parsed.model}' does not exist.`, { param: 'model', code: 'model_not_found' })
  }
  const { request, applied } = normalizeChatRequest(parsed, {
    rules: resolveRules(config.promptRules, record.rules),
    templateAddsThink: config.templateAddsThink,
  })
  c.header('x-prompt-rules', applied.length > 0 ? applied.join(',') : 'none')
  return applyContextBudget(request, { maxModelLen: config.maxModelLen, maxOutputTokens: record.limits.maxOutputTokens }).request
}

/** Picks a backend and relays (stream: true) or collects (stream: false) its answer. */
export async function relayChat(c: Context<AppEnv>, request: UpstreamChatRequest): Promise<Response> {
  const config = c.get('config')
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
  return c.body(body, 200, SSE_HEADERS)
}

/**
 * The body sent to vLLM. It always streams and always asks for usage, so the gateway knows every
 * request's token count; the relay drops the usage chunk unless the client asked for it.
 */
function upstreamBody(request: UpstreamChatRequest, modelId: string): Record<string, unknown> {
  const continuous = request.stream_options?.continuous_usage_stats === true
  return {
    ...request,
    model: modelId,
    stream: true,
    stream_options: continuous ? { include_usage: true, continuous_usage_stats: true } : { include_usage: true },
  }
}
