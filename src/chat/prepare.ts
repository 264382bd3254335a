import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'
import { ApiError } from '../errors.ts'
import { normalizeChatRequest, rulesForKey, type UpstreamChatRequest } from '../normalize/index.ts'
import { parseChatRequest } from '../schema/chat-request.ts'
import { applyContextBudget } from '../schema/context-budget.ts'
import { readJsonBody } from '../schema/read-json.ts'
import { prefixKeyOf } from '../fleet/select.ts'
import type { ChatRelayInput } from '../relay/chat-relay.ts'
import type { KeyRecord, PriorityClass } from '../auth/key-record.ts'
import { queuePlaceOf } from '../fleet/slots.ts'

// A chat request from the client's body to what is sent upstream: shared by the chat route and
// the stream sessions, which differ only in what they do with the prepared request.

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
 * max_tokens is written but the key's output cap). A request that certainly does not fit the
 * context is refused here, before admission and any backend call (applyContextBudget).
 * `forceStream` (stream sessions, which always stream) reads the body as if it said `stream: true`.
 * `body` is a chat body already read and made by the caller (the Responses API's translation).
 */
export async function prepareChatRequest(
  c: Context<AppEnv>,
  options: { forceStream?: boolean; body?: Record<string, unknown> } = {},
): Promise<PreparedChatRequest> {
  const config = c.get('config')
  const { record } = c.get('principal')
  const body = options.body ?? (await readJsonBody(c))
  const streamed =
    options.forceStream && typeof body === 'object' && body !== null && !Array.isArray(body) ? { ...body, stream: true } : body
  const parsed = parseChatRequest(streamed)
  if (parsed.model != null && !config.modelNames.has(parsed.model)) {
    throw new ApiError(404, `The model '${parsed.model}' does not exist.`, { param: 'model', code: 'model_not_found' })
  }
  const { request, applied } = normalizeChatRequest(parsed, {
    rules: rulesForKey(config.promptRules, record.rules),
    templateAddsThink: config.templateAddsThink,
  })
  c.header('x-prompt-rules', applied.length > 0 ? applied.join(',') : 'none')
  const salted = { ...request, cache_salt: cacheSaltFor(record.id, request.cache_salt), ...priorityFor(record) }
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
 * vLLM's per-request `priority` for a key's priority class (docs/keys.md, Priority): lower is served
 * first where the backend schedules by priority (the GPU containers run `--scheduling-policy
 * priority`: a backend's waiting queue is then ordered by priority, then arrival, and a full KV
 * cache preempts the lowest priority; v1/core/sched/request_queue.py, scheduler.py). Standard is
 * vLLM's default, 0, so it is not sent; a client's own `priority` is only ever 0 (chat-request.ts).
 */
const VLLM_PRIORITY: Readonly<Record<PriorityClass, number>> = { interactive: -1, standard: 0, batch: 1 }

export function priorityFor(record: KeyRecord): { priority?: number } {
  const priority = VLLM_PRIORITY[record.priority ?? 'standard'] ?? 0
  return priority === 0 ? {} : { priority }
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

/**
 * How the relay treats a request prepared under the caller's key: whether max_tokens is the key's
 * cap (which vLLM's "too large" may shrink) and whether the key may hedge (its record's `hedging`
 * switch; absent or true, the deployment's HEDGING decides).
 */
export function relayOptionsOf(c: Context<AppEnv>, prepared: PreparedChatRequest): RelayOptions {
  const { keyId, record } = c.get('principal')
  return { gatewayMaxTokens: prepared.gatewayMaxTokens, hedging: record.hedging !== false, place: queuePlaceOf(keyId, record) }
}

/** What the key and the preparation decide about relaying: the cap the gateway wrote, hedging, the key's place in the edge queue. */
export type RelayOptions = Pick<ChatRelayInput, 'gatewayMaxTokens' | 'hedging' | 'place'>

/** What the relay needs of a prepared request: its upstream body, prefix key and what the client asked to get. */
export function relayInputOf(
  request: UpstreamChatRequest,
  modelId: string,
  { gatewayMaxTokens, hedging, place }: RelayOptions,
): ChatRelayInput {
  return {
    body: upstreamBody(request, modelId),
    prefixKey: prefixKeyOf(request.messages),
    gatewayMaxTokens,
    hedging,
    place,
    stream: request.stream === true,
    forwardUsage: request.stream_options?.include_usage === true,
    forwardChunkUsage: request.stream_options?.continuous_usage_stats === true,
  }
}
