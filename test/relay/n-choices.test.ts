// n > 1 through the Worker: vLLM interleaves the choices' chunks (one role chunk each, then their
// tokens, then a finish chunk each); the relay passes them on and the collector keeps them apart.
import { describe, expect, it } from 'vitest'
import { chatBody, postChat } from '../support/worker.ts'
import { dataEvents, frames } from '../support/sse.ts'

const PROMPT = '[emulator ttft_ms=5 itl_ms=1 reasoning_tokens=4 content_tokens=3] Name a prime.'

type Choice = { index: number; delta?: Record<string, string>; message?: Record<string, string>; finish_reason: string | null }

describe('n > 1', () => {
  it('streams every choice: a role chunk, its text and a finish chunk each, then one usage total', async () => {
    const response = await postChat(chatBody(PROMPT, { stream: true, n: 3, stream_options: { include_usage: true } }))
    expect(response.status).toBe(200)
    const chunks = dataEvents(frames(await response.text())) as { choices: Choice[]; usage?: { completion_tokens: number } }[]
    const choices = chunks.flatMap((chunk) => chunk.choices)
    for (const index of [0, 1, 2]) {
      const mine = choices.filter((choice) => choice.index === index)
      expect(mine[0]?.delta?.role).toBe('assistant')
      expect(mine.filter((choice) => choice.finish_reason !== null)).toHaveLength(1)
      expect(mine.map((choice) => choice.delta?.content ?? '').join('')).not.toBe('')
      expect(mine.map((choice) => choice.delta?.reasoning_content ?? '').join('')).not.toBe('')
    }
    // Each choice: 4 reasoning + </think> + 3 content + EOS.
    expect(chunks.at(-1)?.usage?.completion_tokens).toBe(3 * 9)
  })

  it('collects each choice under its index for stream: false, with the total usage', async () => {
    const response = await postChat(chatBody(PROMPT, { n: 2 }))
    expect(response.status).toBe(200)
    const body = (await response.json()) as { choices: Choice[]; usage: { completion_tokens: number } }
    expect(body.choices.map((choice) => choice.index)).toEqual([0, 1])
    for (const choice of body.choices) {
      expect(choice.finish_reason).toBe('stop')
      expect(choice.message?.content).toMatch(/^\n\n/)
      expect(choice.message?.reasoning_content).not.toBe('')
    }
    expect(body.choices[0]?.message?.content).not.toBe(body.choices[1]?.message?.content)
    expect(body.usage.completion_tokens).toBe(2 * 9)
  })
})
