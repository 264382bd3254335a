import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'
import { admitChatRequest } from '../chat/admission.ts'
import { prepareChatRequest, relayInputOf, relayOptionsOf } from '../chat/prepare.ts'
import { endChatRequestWithError, newChatRequestHold, relayChat, type AnswerFormat } from '../relay/chat-relay.ts'
import { ResponseCollector } from '../responses/collect.ts'
import { newId } from '../responses/ids.ts'
import type { ResponseSettings } from '../responses/output.ts'
import { asResponsesError, parseResponsesRequest, toChatBody } from '../responses/request.ts'
import { openTurn } from '../responses/store.ts'
import { ResponseEventStream } from '../responses/stream.ts'
import { readJsonBody } from '../schema/read-json.ts'
import { startRequestTrace } from '../telemetry/context.ts'

/**
 * POST /v1/responses: the Responses request, with the turns it continues read from the store,
 * translated into a chat request, then the chat route's own path (checks, prompt rules, limits,
 * routing, failover, the one generation engine, telemetry); only the client's format differs
 * (src/responses/). A stored response is written before the client hears that it finished.
 */
export async function responses(c: Context<AppEnv>): Promise<Response> {
  const hold = newChatRequestHold(startRequestTrace(c))
  try {
    const config = c.get('config')
    const request = parseResponsesRequest(await readJsonBody(c), config.responseRetentionMs > 0)
    const turn = await openTurn(c.env, c.get('principal').keyId, request, config.responseRetentionMs)
    const prepared = await prepareChatRequest(c, { body: toChatBody(request, turn.context) }).catch((error: unknown) => {
      throw asResponsesError(error)
    })
    await admitChatRequest(c, hold, prepared.reserveTokens)
    const upstream = prepared.request
    const settings: ResponseSettings = {
      id: newId('resp', turn.conversation),
      conversation: turn.conversation,
      keep: turn.keep,
      createdAt: Math.floor(Date.now() / 1000),
      model: config.modelId,
      request,
      temperature: upstream.temperature ?? null,
      topP: upstream.top_p ?? null,
      maxOutputTokens: request.max_output_tokens ?? null,
      summary: request.reasoning?.summary != null,
    }
    const format: AnswerFormat = {
      collector: () => new ResponseCollector(settings),
      streamer: (options) => new ResponseEventStream(settings, options),
    }
    // vLLM's own context refusal comes from the relay, worded for the chat body: named for this one.
    return await relayChat(c, relayInputOf(upstream, config.modelId, relayOptionsOf(c, prepared)), hold, format).catch((error: unknown) => {
      throw asResponsesError(error)
    })
  } catch (error) {
    // A request whose relay already ended it is not ended again.
    endChatRequestWithError(hold, error)
    throw error
  }
}
