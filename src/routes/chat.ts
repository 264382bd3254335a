import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'
import { beginAdmission } from '../limits/admit.ts'
import { prepareChatRequest, relayInputOf } from '../chat/prepare.ts'
import { endChatRequestWithError, newChatRequestHold, relayChat, type ChatRequestHold } from '../relay/chat-relay.ts'
import { startRequestTrace } from '../telemetry/context.ts'
import type { PendingAdmission } from '../limits/admit.ts'

/**
 * POST /v1/chat/completions: validate and fit the request, admit it under the key's limits, relay
 * it. Every request is traced, refused ones included, and its record sent to the telemetry.
 * While the key has clear headroom the backend call starts as the limiter decides (speculative
 * admission, docs/rate-limits.md); relayChat writes nothing before the decision.
 */
export async function chatCompletions(c: Context<AppEnv>): Promise<Response> {
  const hold = newChatRequestHold(startRequestTrace(c))
  try {
    const prepared = await prepareChatRequest(c)
    const pending = beginAdmission(c, prepared.reserveTokens)
    if (pending.speculative) hold.admitting = speculate(hold, pending)
    else hold.admission = await pending.decided
    const input = relayInputOf(prepared.request, c.get('config').modelId, prepared.gatewayMaxTokens)
    return await relayChat(c, input, hold)
  } catch (error) {
    // A request whose relay already ended it is not ended again.
    endChatRequestWithError(hold, error)
    throw error
  }
}

/**
 * The admission, held by the request once decided. A request that ended before its admission came
 * (it failed first) settles the late lease at once: every admitted lease is settled exactly once.
 */
function speculate(hold: ChatRequestHold, pending: PendingAdmission): Promise<void> {
  const admitting = pending.decided.then((admission) => {
    hold.admission = admission
    if (hold.ended) admission.settle(null)
  })
  // relayChat awaits it; a request that failed before it did must not leave a rejection unhandled.
  admitting.catch(() => {})
  return admitting
}
