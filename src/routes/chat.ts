import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'
import { admitChatRequest } from '../chat/admission.ts'
import { prepareChatRequest, relayInputOf, relayOptionsOf } from '../chat/prepare.ts'
import { endChatRequestWithError, newChatRequestHold, relayChat } from '../relay/chat-relay.ts'
import { startRequestTrace } from '../telemetry/context.ts'

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
    await admitChatRequest(c, hold, prepared.reserveTokens)
    return await relayChat(c, relayInputOf(prepared.request, c.get('config').modelId, relayOptionsOf(c, prepared)), hold)
  } catch (error) {
    // A request whose relay already ended it is not ended again.
    endChatRequestWithError(hold, error)
    throw error
  }
}
