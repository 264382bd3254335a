import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'
import { admitRequest } from '../limits/admit.ts'
import { prefixKeyOf } from '../fleet/select.ts'
import { prepareChatRequest, upstreamBody } from '../chat/prepare.ts'
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
    const { request } = prepared
    const input = {
      body: upstreamBody(request, c.get('config').modelId),
      prefixKey: prefixKeyOf(request.messages),
      gatewayMaxTokens: prepared.gatewayMaxTokens,
      stream: request.stream === true,
      forwardUsage: request.stream_options?.include_usage === true,
      forwardChunkUsage: request.stream_options?.continuous_usage_stats === true,
    }
    return await relayChat(c, input, hold)
  } catch (error) {
    // A request whose relay already ended it is not ended again.
    endChatRequestWithError(hold, error)
    throw error
  }
}
