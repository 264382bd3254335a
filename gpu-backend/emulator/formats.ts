// The two generation endpoints differ only in how tokens become bytes:
// chat.completion.chunk with a role chunk and deltas, or text_completion with `text`.

import { chatCompletionBody, splitAnswer, textCompletionBody } from './bodies.ts'
import type { Token } from './text.ts'
import type { Endpoint } from './validate.ts'
import {
  chatFinishChunk,
  chatRoleChunk,
  chatTokenChunk,
  chatUsageChunk,
  completionChunk,
  completionUsageChunk,
  deltaForToken,
  emptyDelta,
  type FinishReason,
  type Usage,
  type WireConfig,
} from './wire.ts'

export type StreamFormat = {
  /** The event sent just before the first token's (chat: the role chunk), or null. */
  opening(usage: Usage | null): string | null
  /** A token's chunk, or null when the token shows nothing (`</think>` under the parser). */
  token(token: Token, usage: Usage | null): string | null
  /** The last token's chunk, carrying the finish reason. */
  finish(token: Token, reason: FinishReason, usage: Usage | null): string
  usage(usage: Usage): string
  /** The whole stream: false body. */
  body(tokens: readonly Token[], reason: FinishReason, usage: Usage): string
}

function chatFormat(wire: WireConfig): StreamFormat {
  return {
    opening: (usage) => chatRoleChunk(wire, usage),
    token(token, usage) {
      const delta = deltaForToken(wire, token)
      return delta === null ? null : chatTokenChunk(wire, delta, usage)
    },
    finish: (token, reason, usage) => chatFinishChunk(wire, deltaForToken(wire, token) ?? emptyDelta(wire), reason, usage),
    usage: (usage) => chatUsageChunk(wire, usage),
    body: (tokens, reason, usage) => chatCompletionBody(wire, splitAnswer(tokens, wire.reasoningParser), reason, usage),
  }
}

function completionFormat(wire: WireConfig): StreamFormat {
  return {
    opening: () => null,
    token: (token, usage) => completionChunk(wire, token.text, null, usage),
    finish: (token, reason, usage) => completionChunk(wire, token.text, reason, usage),
    usage: (usage) => completionUsageChunk(wire, usage),
    body: (tokens, reason, usage) => textCompletionBody(wire, tokens.map((token) => token.text).join(''), reason, usage),
  }
}

export function formatFor(endpoint: Endpoint, wire: WireConfig): StreamFormat {
  return endpoint === 'chat' ? chatFormat(wire) : completionFormat(wire)
}
