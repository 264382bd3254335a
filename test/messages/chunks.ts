// Upstream chat chunks as vLLM sends them to the gateway (continuous usage on every chunk), for the
// Messages API's sink tests.
import { ChunkReader } from '../../src/relay/chunk.ts'
import type { DataChunk } from '../../src/relay/generation.ts'

const PROMPT = 11
let completion = 0

function chunk(
  delta: Record<string, unknown>,
  finish: { finish_reason: string; stop_reason?: string | number | null } | null = null,
): string {
  if (delta.content || delta.reasoning_content) completion++
  const choice = {
    index: 0,
    delta,
    logprobs: null,
    finish_reason: finish?.finish_reason ?? null,
    ...(finish ? { stop_reason: finish.stop_reason ?? null } : {}),
  }
  const usage = { prompt_tokens: PROMPT, completion_tokens: completion, total_tokens: PROMPT + completion }
  return JSON.stringify({ id: 'chatcmpl-1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [choice], usage })
}

/** A generation's payloads: role, reasoning pieces, answer pieces, the finish chunk, the usage chunk, [DONE]. */
export function generation(
  reasoning: readonly string[],
  content: readonly string[],
  finish: { finish_reason: string; stop_reason?: string | number | null } = { finish_reason: 'stop' },
): string[] {
  completion = 0
  const payloads = [chunk({ role: 'assistant', content: '' })]
  for (const text of reasoning) payloads.push(chunk({ reasoning_content: text }))
  for (const text of content) payloads.push(chunk({ content: text }))
  payloads.push(chunk({ content: '' }, finish))
  payloads.push(
    JSON.stringify({
      id: 'chatcmpl-1',
      object: 'chat.completion.chunk',
      created: 1,
      model: 'm',
      choices: [],
      usage: { prompt_tokens: PROMPT, completion_tokens: completion, total_tokens: PROMPT + completion },
    }),
  )
  payloads.push('[DONE]')
  return payloads
}

/** The payloads as the engine hands them to a sink. */
export function dataChunks(payloads: readonly string[]): DataChunk[] {
  const reader = new ChunkReader()
  return payloads.flatMap((payload) => {
    const read = reader.read(payload)
    return read.kind === 'delta' || read.kind === 'usage' ? [read] : []
  })
}

export const sse = (payloads: readonly string[]) => payloads.map((payload) => `data: ${payload}\n\n`).join('')

export const PROMPT_TOKENS = PROMPT
