import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'
import { ApiError } from '../errors.ts'
import { requestBackground } from '../cache/request-background.ts'
import { backendHeaders, credentialsFrom } from '../fleet/access.ts'
import { liveStatsFor } from '../fleet/live-stats.ts'
import { loadFleet, noBackendsRegistered } from '../fleet/registry.ts'
import { rankForQueue } from '../fleet/select.ts'
import { normalizeChatRequest, rulesForKey, type UpstreamChatRequest } from '../normalize/index.ts'
import { parseChatRequest } from '../schema/chat-request.ts'
import { asMessagesError, toChatMessages, type CountTokensRequest } from './request.ts'

// POST /v1/messages/count_tokens: the prompt a Messages request would send, counted by a backend's
// own tokenizer and chat template (vLLM's `POST /tokenize` with the chat messages, which every vLLM
// release in the fleet serves, v0.11.0 included; vLLM's own count_tokens arrived in v0.11.1). The
// messages are the chat path's after the prompt rules, with the generation prompt, so the count is
// the `input_tokens` a generation of the same request reports.

/** The chat request a count is made of: the translated messages, checked and through the key's prompt rules. */
export function countedPrompt(c: Context<AppEnv>, request: CountTokensRequest): UpstreamChatRequest {
  const config = c.get('config')
  if (!config.modelNames.has(request.model)) {
    throw new ApiError(404, `The model '${request.model}' does not exist.`, { param: 'model', code: 'model_not_found' })
  }
  let parsed
  try {
    parsed = parseChatRequest({ model: request.model, messages: toChatMessages(request) })
  } catch (error) {
    throw asMessagesError(error)
  }
  const { request: normalized, applied } = normalizeChatRequest(parsed, {
    rules: rulesForKey(config.promptRules, c.get('principal').record.rules),
    templateAddsThink: config.templateAddsThink,
  })
  c.header('x-prompt-rules', applied.length > 0 ? applied.join(',') : 'none')
  return normalized
}

/** What vLLM's /tokenize is sent: the chat messages and how the template ends them. */
export function tokenizeBody(prompt: UpstreamChatRequest, modelId: string): Record<string, unknown> {
  return {
    model: modelId,
    messages: prompt.messages,
    add_generation_prompt: prompt.add_generation_prompt ?? true,
    ...(prompt.continue_final_message != null ? { continue_final_message: prompt.continue_final_message } : {}),
  }
}

/**
 * Counts the prompt's tokens on the first backend of the fleet's ranking that answers: every
 * backend in rotation, full ones included (a count takes no generation slot); a backend that
 * cannot be reached, times out or fails (5xx) is passed over for the next, up to FAILOVER_ATTEMPTS.
 */
export async function countPromptTokens(c: Context<AppEnv>, prompt: UpstreamChatRequest): Promise<number> {
  const config = c.get('config')
  const background = requestBackground(c)
  const fleet = await loadFleet(c.env.FLEET, config.fleet.fallback, config.fleet.cacheTtlMs, {
    background,
    staleMaxMs: config.fleet.staleMaxMs,
  })
  if (fleet.backends.length === 0) throw noBackendsRegistered()
  const live = liveStatsFor(config, config.fleet.circuit)
  const candidates = rankForQueue({
    backends: fleet.backends,
    health: fleet.health,
    stats: (id) => live.of(id),
    prefixKey: null,
    now: Date.now(),
    options: config.fleet.selection,
  })
  const credentials = credentialsFrom(c.env, config.backendApiKey)
  const body = JSON.stringify(tokenizeBody(prompt, config.modelId))
  let last: ApiError = new ApiError(503, 'No backend is available to count the tokens.', { code: 'no_backend_available' })
  for (const { backend } of candidates.slice(0, Math.max(1, config.fleet.failoverAttempts))) {
    let response: Response
    try {
      response = await fetch(`${backend.url}/tokenize`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...backendHeaders(backend, credentials) },
        body,
        signal: AbortSignal.any([c.req.raw.signal, AbortSignal.timeout(config.upstreamHeadersTimeoutMs)]),
        redirect: 'manual',
      })
    } catch (error) {
      if (c.req.raw.signal.aborted) throw error
      last = new ApiError(502, `The backend could not be reached to count the tokens (${errorName(error)}).`, {
        code: 'upstream_unreachable',
      })
      continue
    }
    if (response.status >= 500) {
      await response.body?.cancel()
      last = new ApiError(502, `The backend failed to count the tokens (HTTP ${response.status}).`, { code: 'upstream_error' })
      continue
    }
    const answer: unknown = await response.json().catch(() => null)
    // A refusal of the prompt itself (vLLM's 400, its message kept); the gateway's key refused is a 502.
    if (response.status === 400) throw new ApiError(400, `The backend refused to count the prompt: ${messageOf(answer)}`)
    const count = response.ok ? readCount(answer) : null
    if (count === null) {
      throw new ApiError(502, `The backend did not count the tokens (HTTP ${response.status}).`, { code: 'upstream_bad_response' })
    }
    return count
  }
  throw last
}

function readCount(body: unknown): number | null {
  const count = typeof body === 'object' && body !== null && 'count' in body ? body.count : null
  return typeof count === 'number' && Number.isInteger(count) && count >= 0 ? count : null
}

/** vLLM's error message, in either era's body (or Starlette's `detail`). */
function messageOf(body: unknown): string {
  if (typeof body !== 'object' || body === null) return 'no reason given.'
  const fields = 'error' in body && typeof body.error === 'object' && body.error !== null ? body.error : body
  const message = 'message' in fields ? fields.message : 'detail' in fields ? fields.detail : null
  return typeof message === 'string' ? message : 'no reason given.'
}

function errorName(error: unknown): string {
  return error instanceof Error ? error.name : 'Error'
}
