import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'
import { ApiError } from '../errors.ts'
import { admitRequest, type Admission } from '../limits/admit.ts'
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

/** POST /v1/chat/completions: validate and fit the request, admit it under the key's limits, relay it. */
export async function chatCompletions(c: Context<AppEnv>): Promise<Response> {
  const { request, reserveTokens } = await prepareChatRequest(c)
  const admission = await admitRequest(c, reserveTokens)
  try {
    return await relayChat(c, request, admission)
  } catch (error) {
    // Whatever failed before the relay took the request over; settling twice is harmless.
    admission.settle(null)
    throw error
  }
}

export interface PreparedChatRequest {
  request: UpstreamChatRequest
  /** Tokens to reserve against the key's limit: the estimated prompt plus the most output allowed. */
  reserveTokens: number
}

/**
 * Checks the body, maps the model name, applies the DeepSeek-R1 prompt rules (telling the client
 * which ones changed its request in `x-prompt-rules`) and fits the result into the context.
 */
async function prepareChatRequest(c: Context<AppEnv>): Promise<PreparedChatRequest> {
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
  const fitted = applyContextBudget(request, { maxModelLen: config.maxModelLen, maxOutputTokens: record.limits.maxOutputTokens })
  const maxOutput = fitted.request.max_tokens ?? config.maxModelLen - fitted.promptTokens
  return { request: fitted.request, reserveTokens: fitted.promptTokens + maxOutput }
}

/**
 * Picks a backend and relays (stream: true) or collects (stream: false) its answer. The admission
 * is settled when the upstream call ends, however it ends, with the tokens the backend reported.
 */
export async function relayChat(c: Context<AppEnv>, request: UpstreamChatRequest, admission: Admission): Promise<Response> {
  const config = c.get('config')
  const call = new UpstreamCall(c.req.raw.signal, {
    firstEventMs: config.firstEventTimeoutMs,
    idleMs: config.eventIdleTimeoutMs,
    onEnd: admission.settle,
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
    forwardChunkUsage: request.stream_options?.continuous_usage_stats === true,
    keepAliveMs: config.keepAliveMs,
  })
  return c.body(body, 200, SSE_HEADERS)
}

/**
 * The body sent to vLLM. It always streams and always asks for usage on every chunk, so the
 * gateway knows the tokens each request used, even one that ends early (a client that leaves, a
 * backend that fails); the relay passes usage on only as the client asked for it.
 */
function upstreamBody(request: UpstreamChatRequest, modelId: string): Record<string, unknown> {
  return {
    ...request,
    model: modelId,
    stream: true,
    stream_options: { include_usage: true, continuous_usage_stats: true },
  }
}
