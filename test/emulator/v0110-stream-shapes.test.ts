// Shapes of vLLM v0.11.0 streams that one token per chunk never shows: merged deltas
// (output_processor.py RequestOutputCollector), the delta that carries both fields at `</think>`
// (deepseek_r1_reasoning_parser.py), n > 1 (serving_chat.py stream generator), min_tokens.

import { describe, expect, it } from 'vitest'
import type { Emulator } from '../../gpu-backend/emulator/server.ts'
import { chatBody, emulatorV0110, post } from './helpers.ts'
import { payloads } from '../support/sse.ts'

type Delta = Record<string, string | null>
type Chunk = {
  choices: { index: number; delta: Delta; finish_reason: string | null; stop_reason?: unknown }[]
  usage?: { completion_tokens: number; prompt_tokens: number; total_tokens: number }
}

const USAGE = { stream: true, stream_options: { include_usage: true, continuous_usage_stats: true } }

async function streamChunks(emulator: Emulator, body: unknown): Promise<Chunk[]> {
  return payloads(await (await post(emulator, '/v1/chat/completions', body)).text()) as Chunk[]
}

/** The raw delta JSON of each chunk with a choice, in order. */
async function rawDeltas(emulator: Emulator, body: unknown): Promise<string[]> {
  const text = await (await post(emulator, '/v1/chat/completions', body)).text()
  return [...text.matchAll(/"delta":(\{[^}]*\})/g)].map((match) => match[1] ?? '')
}

function joined(chunks: Chunk[], field: string, index = 0): string {
  return chunks.flatMap((chunk) => chunk.choices.filter((c) => c.index === index).map((c) => c.delta[field] ?? '')).join('')
}

describe('merged deltas (vLLM v0.11.0 RequestOutputCollector)', () => {
  it('merges several engine steps into one delta when the API server falls behind, with usage counting every token', async () => {
    const emulator = await emulatorV0110()
    const body = chatBody('reasoning_tokens=6 content_tokens=5', USAGE)
    const single = await streamChunks(emulator, body)
    emulator.configure({ mergeTokens: 3 })
    const merged = await streamChunks(emulator, body)
    // Same text, fewer chunks: the first output alone, then 3 steps per delta.
    expect(joined(merged, 'reasoning_content')).toBe(joined(single, 'reasoning_content'))
    expect(joined(merged, 'content')).toBe(joined(single, 'content'))
    const counts = merged.filter((chunk) => chunk.choices.length > 0).map((chunk) => chunk.usage?.completion_tokens)
    expect(counts).toEqual([0, 1, 4, 7, 10, 13])
    expect(merged.at(-1)?.usage?.completion_tokens).toBe(13)
  })

  it('sends one delta with both content and reasoning_content at </think>, content first (DeltaMessage field order)', async () => {
    const emulator = await emulatorV0110()
    // Steps 4, 5, 6 are delivered together: a reasoning word, </think>, the first content word.
    const deltas = await rawDeltas(emulator, chatBody('reasoning_tokens=5 content_tokens=4 merge_tokens=3', { stream: true }))
    expect(deltas[3]).toMatch(/^\{"content":"\\n\\n[^"]+","reasoning_content":" [^"]+"\}$/)
  })

  it('sets content to null when a merged delta ends with </think>, and reasoning_content to "" when it starts with it', async () => {
    const emulator = await emulatorV0110()
    const ending = await rawDeltas(emulator, chatBody('reasoning_tokens=6 content_tokens=4 merge_tokens=3', { stream: true }))
    expect(ending[3]).toMatch(/^\{"content":null,"reasoning_content":" [^"]+"\}$/)
    const starting = await rawDeltas(emulator, chatBody('reasoning_tokens=4 content_tokens=4 merge_tokens=3', { stream: true }))
    expect(starting[3]).toMatch(/^\{"content":"\\n\\n[^"]+","reasoning_content":""\}$/)
  })
})

describe('n > 1 (vLLM v0.11.0 parallel sampling)', () => {
  it('streams one role chunk per choice, interleaved token chunks, one finish per choice and per-choice continuous usage', async () => {
    const emulator = await emulatorV0110()
    const chunks = await streamChunks(emulator, chatBody('reasoning_tokens=3 content_tokens=3', { ...USAGE, n: 2 }))
    const withChoice = chunks.filter((chunk) => chunk.choices.length > 0)
    expect(withChoice.every((chunk) => chunk.choices.length === 1)).toBe(true)
    expect(withChoice.slice(0, 2).map((chunk) => [chunk.choices[0]?.index, chunk.choices[0]?.delta.role])).toEqual([
      [0, 'assistant'],
      [1, 'assistant'],
    ])
    const indexes = withChoice.slice(2).map((chunk) => chunk.choices[0]?.index)
    expect(indexes.slice(0, 4)).toEqual([0, 1, 0, 1])
    for (const index of [0, 1]) {
      const own = withChoice.filter((chunk) => chunk.choices[0]?.index === index)
      expect(own.filter((chunk) => chunk.choices[0]?.finish_reason !== null).map((chunk) => chunk.choices[0]?.finish_reason)).toEqual([
        'stop',
      ])
      // previous_num_tokens[i]: the choice's own tokens so far; 3 + </think> + 3 + EOS = 8.
      expect(own.map((chunk) => chunk.usage?.completion_tokens)).toEqual([0, 1, 2, 3, 5, 6, 7, 8])
    }
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: { completion_tokens: 16 } })
    expect(joined(chunks, 'content', 0)).not.toBe(joined(chunks, 'content', 1))
  })

  it('answers stream: false with n choices, the streamed texts, and the total usage', async () => {
    const emulator = await emulatorV0110()
    const body = chatBody('reasoning_tokens=3 content_tokens=3', { n: 3 })
    const answer = (await (await post(emulator, '/v1/chat/completions', body)).json()) as {
      choices: { index: number; message: { content: string; reasoning_content: string }; finish_reason: string }[]
      usage: { completion_tokens: number }
    }
    expect(answer.choices.map((choice) => [choice.index, choice.finish_reason])).toEqual([
      [0, 'stop'],
      [1, 'stop'],
      [2, 'stop'],
    ])
    expect(answer.usage.completion_tokens).toBe(24)
    const streamed = await streamChunks(emulator, { ...body, stream: true })
    for (const choice of answer.choices) expect(choice.message.content).toBe(joined(streamed, 'content', choice.index))
    const single = (await (await post(emulator, '/v1/chat/completions', { ...body, n: 1 })).json()) as typeof answer
    expect(single.choices[0]?.message.content).toBe(answer.choices[0]?.message.content)
  })
})

describe('min_tokens (vLLM v0.11.0 MinTokensLogitsProcessor)', () => {
  it('keeps EOS away until min_tokens tokens are out', async () => {
    const emulator = await emulatorV0110()
    const answer = (await (
      await post(emulator, '/v1/chat/completions', chatBody('reasoning_tokens=2 content_tokens=2', { min_tokens: 12 }))
    ).json()) as {
      usage: { completion_tokens: number }
      choices: { finish_reason: string }[]
    }
    expect(answer.usage.completion_tokens).toBe(13) // 12 tokens, then EOS
    expect(answer.choices[0]?.finish_reason).toBe('stop')
  })
})
