import type { Context } from 'hono'
import type { AppEnv } from '../env.ts'
import { admitChatRequest } from '../chat/admission.ts'
import { prepareChatRequest, relayInputOf, relayOptionsOf } from '../chat/prepare.ts'
import { anthropicErrorBody } from '../errors.ts'
import { admitRequest } from '../limits/admit.ts'
import { MessageCollector } from '../messages/collect.ts'
import { countedPrompt, countPromptTokens } from '../messages/count-tokens.ts'
import { newMessageId, type MessageSettings } from '../messages/output.ts'
import { asMessagesError, parseCountTokensRequest, parseMessagesRequest, thinkingDisplay, toChatBody } from '../messages/request.ts'
import { MessageEventStream } from '../messages/stream.ts'
import { endChatRequestWithError, newChatRequestHold, relayChat, type AnswerFormat } from '../relay/chat-relay.ts'
import { readJsonBody } from '../schema/read-json.ts'
import { startRequestTrace } from '../telemetry/context.ts'

/**
 * POST /v1/messages: the Anthropic Messages request translated into a chat request, then the chat
 * route's own path (checks, prompt rules, limits, routing, failover, the one generation engine,
 * telemetry); only the client's format differs (src/messages/). The `anthropic-version` and
 * `anthropic-beta` headers are accepted and not read.
 */
export async function messages(c: Context<AppEnv>): Promise<Response> {
  const hold = newChatRequestHold(startRequestTrace(c))
  try {
    const config = c.get('config')
    const request = parseMessagesRequest(await readJsonBody(c))
    const prepared = await prepareChatRequest(c, { body: toChatBody(request) }).catch((error: unknown) => {
      throw asMessagesError(error)
    })
    await admitChatRequest(c, hold, prepared.reserveTokens)
    const settings: MessageSettings = {
      id: newMessageId(),
      model: config.modelId,
      thinking: thinkingDisplay(request),
    }
    const format: AnswerFormat = {
      collector: () => new MessageCollector(settings),
      streamer: (options) => new MessageEventStream(settings, options),
      errorBody: (error) => anthropicErrorBody(asMessagesError(error), c.get('requestId')),
    }
    const input = relayInputOf(prepared.request, config.modelId, relayOptionsOf(c, prepared))
    return await relayChat(c, input, hold, format).catch((error: unknown) => {
      throw asMessagesError(error)
    })
  } catch (error) {
    // A request whose relay already ended it is not ended again.
    endChatRequestWithError(hold, error)
    throw error
  }
}

/**
 * POST /v1/messages/count_tokens: `{"input_tokens": N}`, the prompt counted by a backend's
 * tokenizer as the chat path would send it (src/messages/count-tokens.ts). Admitted as a request
 * of no tokens: it counts against the key's requests per minute, never its tokens.
 */
export async function countTokens(c: Context<AppEnv>): Promise<Response> {
  const request = parseCountTokensRequest(await readJsonBody(c))
  const prompt = countedPrompt(c, request)
  const admission = await admitRequest(c, 0)
  let inputTokens: number
  try {
    inputTokens = await countPromptTokens(c, prompt)
  } catch (error) {
    admission.settle(null, 'backend_failed')
    throw error
  }
  admission.settle({ promptTokens: 0, completionTokens: 0 }, 'done')
  return c.json({ input_tokens: inputTokens })
}
