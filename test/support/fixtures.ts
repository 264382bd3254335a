// Captures of real vLLM output (test/fixtures/vllm/, sources in SOURCES.md), shared by the
// fixture server (Node, test/setup/fixture-server.ts) and the Worker tests that replay them
// (workerd). Nothing here touches the file system or the network, so both sides can import it.

import { frames } from './sse.ts'

export interface VllmFixture {
  /** File name under test/fixtures/vllm/. */
  file: string
  /** The HTTP status the capture was answered with. */
  status: number
  contentType: string
}

const SSE = 'text/event-stream; charset=utf-8'
const JSON_TYPE = 'application/json'

export const VLLM_FIXTURES = {
  'workers-ai-qwen3-30b-reasoning-content': { file: 'workers-ai-qwen3-30b-reasoning-content.sse', status: 200, contentType: SSE },
  'nearai-deepseek-v3.1-reasoning-content-null': { file: 'nearai-deepseek-v3.1-reasoning-content-null.sse', status: 200, contentType: SSE },
  'instruct-kr-qwen3-0.6b-no-reasoning-parser': { file: 'instruct-kr-qwen3-0.6b-no-reasoning-parser.sse', status: 200, contentType: SSE },
  'pycon-kr-qwen3-0.6b-no-reasoning-parser': { file: 'pycon-kr-qwen3-0.6b-no-reasoning-parser.sse', status: 200, contentType: SSE },
  'qwen3-235b-reasoning-only-first-5-events': { file: 'qwen3-235b-reasoning-only-first-5-events.sse', status: 200, contentType: SSE },
  'trec-rag-vllm-0.24-grammar-error-400': { file: 'trec-rag-vllm-0.24-grammar-error-400.json', status: 400, contentType: JSON_TYPE },
  'vastai-deepseek-v3.1-thinking-in-content': {
    file: 'vastai-deepseek-v3.1-thinking-in-content.json',
    status: 200,
    contentType: JSON_TYPE,
  },
} as const satisfies Record<string, VllmFixture>

export type FixtureName = keyof typeof VLLM_FIXTURES

/**
 * The fixture server picks the capture named in the request's messages: the Worker rewrites the
 * body (model, sampling defaults, stream options) but passes a plain user message's text on.
 */
const MARKER = 'replay-vllm-capture:'

export function fixturePrompt(name: FixtureName): string {
  return `${MARKER}${name}`
}

export function fixtureNamedIn(requestBody: string): FixtureName | null {
  const match = /replay-vllm-capture:([a-z0-9.-]+)/.exec(requestBody)
  const name = match?.[1]
  return name !== undefined && name in VLLM_FIXTURES ? (name as FixtureName) : null
}

/**
 * Piece sizes the server writes a capture in, cycled: single bytes and odd sizes land inside
 * lines, JSON strings and the blank line between events.
 */
const PIECE_SIZES = [1, 3, 7, 16, 50, 2, 121, 400, 5, 1000]

/**
 * Cuts a capture into the writes the fixture server sends. Besides the cycled sizes, the first
 * multi-byte UTF-8 character (if any) is cut after its lead byte, so a decoder that does not
 * carry partial characters across reads breaks it.
 */
export function writePlan(bytes: Uint8Array): Uint8Array[] {
  const cuts = new Set<number>()
  let at = 0
  for (let i = 0; at < bytes.length; i++) {
    at += PIECE_SIZES[i % PIECE_SIZES.length] ?? 1
    if (at < bytes.length) cuts.add(at)
  }
  const lead = bytes.findIndex((byte) => byte >= 0xc0)
  if (lead !== -1 && lead + 1 < bytes.length) cuts.add(lead + 1)
  const sorted = [...cuts].sort((a, b) => a - b)
  const pieces: Uint8Array[] = []
  let start = 0
  for (const cut of [...sorted, bytes.length]) {
    pieces.push(bytes.subarray(start, cut))
    start = cut
  }
  return pieces
}

/** What one choice of a stream carried, text by text, in arrival order. */
export interface ChoiceTexts {
  content: string[]
  reasoning: string[]
  /** Reasoning and answer pieces together, in arrival order, whichever field carried them. */
  sequence: string[]
  /** Tool-call argument fragments, concatenated per tool-call index. */
  toolArguments: Map<number, string>
  finishReason: string | null
}

export interface StreamTexts {
  choices: Map<number, ChoiceTexts>
  /** Payloads of the data events, `[DONE]` included, in order. */
  payloads: string[]
}

interface Delta {
  content?: string | null
  reasoning_content?: string | null
  reasoning?: string | null
  tool_calls?: { index: number; function?: { arguments?: string } }[]
}

interface Chunk {
  choices?: { index: number; delta?: Delta; finish_reason?: string | null }[]
}

/**
 * Reads an SSE body (a capture or what the Worker sent) the simple way: events split at blank
 * lines, one `data:` line each. Reasoning is taken from either field name, so the same reader
 * states what a capture holds and checks what a client got.
 */
export function readStream(body: string): StreamTexts {
  const payloads = frames(body)
    .map((frame) => frame.split('\n').find((line) => line.startsWith('data:')))
    .filter((line): line is string => line !== undefined)
    .map((line) => line.slice('data:'.length).trimStart())
  const choices = new Map<number, ChoiceTexts>()
  for (const payload of payloads) {
    if (payload === '[DONE]') continue
    for (const choice of (JSON.parse(payload) as Chunk).choices ?? []) addChoice(choices, choice)
  }
  return { choices, payloads }
}

function addChoice(choices: Map<number, ChoiceTexts>, choice: NonNullable<Chunk['choices']>[number]): void {
  let texts = choices.get(choice.index)
  if (!texts) {
    texts = { content: [], reasoning: [], sequence: [], toolArguments: new Map(), finishReason: null }
    choices.set(choice.index, texts)
  }
  const delta = choice.delta ?? {}
  const reasoning = delta.reasoning_content ?? delta.reasoning
  if (typeof reasoning === 'string' && reasoning !== '') {
    texts.reasoning.push(reasoning)
    texts.sequence.push(reasoning)
  }
  if (typeof delta.content === 'string' && delta.content !== '') {
    texts.content.push(delta.content)
    texts.sequence.push(delta.content)
  }
  for (const call of delta.tool_calls ?? []) {
    const fragment = call.function?.arguments ?? ''
    texts.toolArguments.set(call.index, (texts.toolArguments.get(call.index) ?? '') + fragment)
  }
  if (choice.finish_reason) texts.finishReason = choice.finish_reason
}

/** The answer and reasoning of one choice as whole strings. */
export function joined(texts: ChoiceTexts | undefined): { content: string; reasoning: string } {
  return { content: texts?.content.join('') ?? '', reasoning: texts?.reasoning.join('') ?? '' }
}
