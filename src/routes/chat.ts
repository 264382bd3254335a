import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'
import { ApiError } from '../errors.ts'
import { admitRequest, type Admission } from '../limits/admit.ts'
import { prefixKeyOf } from '../fleet/select.ts'
import type { Attempt, UpstreamAttempts } from '../relay/attempts.ts'
import { openAttempts } from '../relay/open-attempts.ts'
import { collectCompletion, type ChatCompletion } from '../relay/collect.ts'
import { SSE_HEADERS } from '../relay/sse.ts'
import { relaySse } from '../relay/stream.ts'
import { normalizeChatRequest, resolveRules, type UpstreamChatRequest } from '../normalize/index.ts'
import { parseChatRequest } from '../schema/chat-request.ts'
import { finishWithError, startRequestTrace } from '../telemetry/context.ts'
import { liveGauges } from '../telemetry/counters.ts'
import type { RequestTrace } from '../telemetry/trace.ts'
import { applyContextBudget } from '../schema/context-budget.ts'
import { readJsonBody } from '../schema/read-json.ts'

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

export interface PreparedChatRequest {
  request: UpstreamChatRequest
  /** Tokens to reserve against the key's limit: the estimated prompt plus the most output allowed. */
  reserveTokens: number
  /** max_tokens is the key's cap, written by the gateway: vLLM's "too large" may be retried with the room it states. */
  gatewayMaxTokens: boolean
}

/**
 * Checks the body, maps the model name, applies the DeepSeek-R1 prompt rules (telling the client
 * which ones changed its request in `x-prompt-rules`) and sizes it against the key's limits (no
 * max_tokens is written but the key's output cap).
 * `forceStream` (stream sessions, which always stream) reads the body as if it said `stream: true`.
 */
export async function prepareChatRequest(c: Context<AppEnv>, options: { forceStream?: boolean } = {}): Promise<PreparedChatRequest> {
  const config = c.get('config')
  const { record } = c.get('principal')
  const body = await readJsonBody(c)
  const streamed = options.forceStream && typeof body === 'object' && body !== null && !Array.isArray(body) ? { ...body, stream: true } : body
  const parsed = parseChatRequest(streamed)
  if (parsed.model != null && !config.modelNames.has(parsed.model)) {
    throw new ApiError(404, `The model '${parsed.model}' does not exist.`, { param: 'model', code: 'model_not_found' })
  }
  const { request, applied } = normalizeChatRequest(parsed, {
    rules: resolveRules(config.promptRules, record.rules),
    templateAddsThink: config.templateAddsThink,
  })
  c.header('x-prompt-rules', applied.length > 0 ? applied.join(',') : 'none')
  const salted = { ...request, cache_salt: cacheSaltFor(record.id, request.cache_salt) }
  const budgeted = applyContextBudget(salted, { maxModelLen: config.maxModelLen, maxOutputTokens: record.limits.maxOutputTokens })
  return { request: budgeted.request, reserveTokens: budgeted.reserveTokens, gatewayMaxTokens: budgeted.gatewayMaxTokens }
}

/**
 * The prefix-cache salt for a key's requests. vLLM V1 hashes the salt into a prompt's first KV
 * block (`vllm/v1/core/kv_cache_utils.py`, generate_block_hash_extra_keys), so prompts share
 * cached blocks only within one key: no tenant can learn from its time to first token whether
 * another tenant sent a prompt. A client's own salt narrows its cache further; it always follows
 * the key id (which has no ':'), so no key can name another key's salt.
 */
export function cacheSaltFor(keyId: string, clientSalt: string | null | undefined): string {
  return clientSalt ? `${keyId}:${clientSalt}` : keyId
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

/**
 * The body sent to vLLM. It always streams and always asks for usage on every chunk, so the
 * gateway knows the tokens each request used, even one that ends early (a client that leaves, a
 * backend that fails); the relay passes usage on only as the client asked for it.
 */
export function upstreamBody(request: UpstreamChatRequest, modelId: string): Record<string, unknown> {
  return {
    ...request,
    model: modelId,
    stream: true,
    stream_options: { include_usage: true, continuous_usage_stats: true },
  }
}
