// The two generation endpoints differ only in how outputs become bytes: chat.completion.chunk
// with role chunks and parsed deltas (serving_chat.py chat_completion_stream_generator), or
// text_completion with `text` (serving_completion.py completion_stream_generator).

import { chatCompletionBody, textCompletionBody } from './bodies.ts'
import type { Json } from './errors.ts'
import type { ChoiceOutput, StopReason } from './outputs.ts'
import { parseStreamingDelta, splitFinalText, type Answer } from './reasoning.ts'
import type { Token } from './text.ts'
import type { Endpoint } from './validate.ts'
import {
  chatFinishChunk,
  chatRoleChunk,
  chatTokenChunk,
  chatUsageChunk,
  completionChunk,
  completionUsageChunk,
  delta,
  type FinishReason,
  type Usage,
  type WireConfig,
} from './wire.ts'

/** A finished choice, for the stream: false body. */
export type ChoiceResult = { index: number; text: string; tokens: readonly Token[]; finishReason: FinishReason; stopReason: StopReason }

export type StreamFormat = {
  /** The events before the first output (chat: one role chunk per choice). */
  opening(choices: number, usage: Usage | null): string[]
  /** One (possibly merged) output's chunk, or null when it shows nothing (`</think>` alone under the parser). */
  output(out: ChoiceOutput, usage: Usage | null): string | null
  usage(usage: Usage): string
  /** The whole stream: false body. */
  body(results: readonly ChoiceResult[], usage: Usage): string
}

type JsonObject = { [key: string]: Json }

/**
 * n single-choice bodies from bodies.ts made into one: the choices in index order, each with its
 * stop_reason (chat_completion_full_generator: `for output in final_res.outputs`), the total usage.
 */
function joinBodies(
  results: readonly ChoiceResult[],
  bodyOf: (result: ChoiceResult) => string,
  patch: (choice: JsonObject) => void,
): string {
  const bodies = results.map((result) => JSON.parse(bodyOf(result)) as JsonObject)
  const choices = bodies.map((body, position) => {
    const choice = (body.choices as JsonObject[])[0] ?? {}
    const result = results[position]
    choice.index = result?.index ?? position
    choice.stop_reason = result?.stopReason ?? null
    patch(choice)
    return choice
  })
  return JSON.stringify({ ...bodies[0], choices })
}

function chatFormat(wire: WireConfig): StreamFormat {
  /** Per choice: `</think>` came in an earlier output (the parser's previous_token_ids). */
  const endSeen = new Set<number>()
  const answerOf = (text: string): Answer => (wire.reasoningParser ? splitFinalText(text) : { content: text, reasoning: null })
  return {
    opening: (choices, usage) => Array.from({ length: choices }, (_, index) => chatRoleChunk(wire, index, usage)),
    output(out, usage) {
      const fields = wire.reasoningParser ? parseStreamingDelta(out.text, out.tokens, endSeen.has(out.index)) : { content: out.text }
      if (out.tokens.some((token) => token.kind === 'think_end')) endSeen.add(out.index)
      if (out.finishReason === null) return fields === null ? null : chatTokenChunk(wire, out.index, delta(wire, fields), usage)
      // A finishing output the parser showed nothing of still ends the choice, with DeltaMessage().
      return chatFinishChunk(wire, out.index, delta(wire, fields ?? {}), out.finishReason, out.stopReason, usage)
    },
    usage: (usage) => chatUsageChunk(wire, usage),
    body: (results, usage) =>
      joinBodies(
        results,
        (result) => chatCompletionBody(wire, answerOf(result.text), result.finishReason, usage),
        (choice) => {
          if (wire.reasoningField === 'reasoning_null') (choice.message as JsonObject).reasoning_content = null
        },
      ),
  }
}

function completionFormat(wire: WireConfig): StreamFormat {
  return {
    opening: () => [],
    output: (out, usage) => completionChunk(wire, out.index, out.text, { reason: out.finishReason, stopReason: out.stopReason }, usage),
    usage: (usage) => completionUsageChunk(wire, usage),
    body: (results, usage) =>
      joinBodies(
        results,
        (result) => textCompletionBody(wire, result.text, result.finishReason, usage),
        () => {},
      ),
  }
}

export function formatFor(endpoint: Endpoint, wire: WireConfig): StreamFormat {
  return endpoint === 'chat' ? chatFormat(wire) : completionFormat(wire)
}
