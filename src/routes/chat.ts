import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'
import { admitRequest } from '../limits/admit.ts'
import { prepareChatRequest, relayInputOf } from '../chat/prepare.ts'
import { endChatRequestWithError, newChatRequestHold, relayChat } from '../relay/chat-relay.ts'
import { startRequestTrace } from '../telemetry/context.ts'

/**
 * POST /v1/chat/completions: validate and fit the request, admit it under the key's limits, relay
 * it. Every request is traced, refused ones included, and its record sent to the telemetry.
 */
export async function chatCompletions(c: Context<AppEnv>): Promise<Response> {
  const hold = newChatRequestHold(startRequestTrace(c))
  try {
    const prepared = await prepareChatRequest(c)
    hold.admission = await admitRequest(c, prepared.reserveTokens)
    const input = relayInputOf(prepared.request, c.get('config').modelId, prepared.gatewayMaxTokens)
    return await relayChat(c, input, hold)
  } catch (error) {
    // A request whose relay already ended it is not ended again.
    endChatRequestWithError(hold, error)
    throw error
  }
}
