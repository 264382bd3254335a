// The deepseek_r1 reasoning parser of vLLM v0.11.0, on the emulator's tokens:
// vllm/reasoning/deepseek_r1_reasoning_parser.py DeepSeekR1ReasoningParser and its base
// vllm/reasoning/basic_parsers.py BaseThinkingReasoningParser. The chat template already ends
// in `<think>\n`, so the output never holds the start token and only `</think>` matters.

import type { Token } from './text.ts'

const END_TOKEN = '</think>'

/**
 * The DeltaMessage fields the parser set: undefined = not set (absent from the chunk, which
 * vLLM dumps with exclude_unset), null = set to None (present as null).
 */
export type DeltaFields = { role?: string; content?: string | null; reasoning?: string | null }

/** Python's str.find on code points (vLLM's offsets are code points, JS strings UTF-16). */
function codePoints(text: string): string[] {
  return Array.from(text)
}

/** Python's text[start:end] on code points, negative indexes counting from the end. */
export function pySlice(text: string, start: number, end?: number): string {
  return codePoints(text).slice(start, end).join('')
}

/** Python's text.find(sub): the code-point index of the first match, or -1. */
export function pyFind(text: string, sub: string): number {
  const at = text.indexOf(sub)
  return at === -1 ? -1 : codePoints(text.slice(0, at)).length
}

/**
 * extract_reasoning_content_streaming for one output: `deltaTokens` are the tokens it carries
 * (several when the API server fell behind), `endSeen` whether `</think>` came in an earlier one.
 * null: no chunk (a delta that is `</think>` alone).
 */
export function parseStreamingDelta(deltaText: string, deltaTokens: readonly Token[], endSeen: boolean): DeltaFields | null {
  // BaseThinkingReasoningParser: "Skip single special tokens".
  if (deltaTokens.length === 1 && deltaTokens[0]?.kind === 'think_end') return null
  if (deltaTokens.some((token) => token.kind === 'think_end')) {
    // DeepSeekR1ReasoningParser: the end token inside a longer delta splits it in two. With the
    // text held back by a stop string, find() may miss and give -1: vLLM slices with it as is.
    const endIndex = pyFind(deltaText, END_TOKEN)
    const reasoning = pySlice(deltaText, 0, endIndex)
    const content = pySlice(deltaText, endIndex + END_TOKEN.length)
    return { content: content === '' ? null : content, reasoning }
  }
  return endSeen ? { content: deltaText } : { reasoning: deltaText }
}

export type Answer = { content: string | null; reasoning: string | null }

/** extract_reasoning_content (stream: false): before `</think>` is reasoning, after it content (null when empty). */
export function splitFinalText(text: string): Answer {
  const end = text.indexOf(END_TOKEN)
  if (end === -1) return { reasoning: text, content: null }
  const content = text.slice(end + END_TOKEN.length)
  return { reasoning: text.slice(0, end), content: content === '' ? null : content }
}
