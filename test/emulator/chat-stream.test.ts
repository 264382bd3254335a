import { describe, expect, it } from 'vitest'
import { countChatPromptTokens } from '../../gpu-backend/emulator/tokenizer.ts'
import { chatBody, emulatorV0110, MODEL, post } from './helpers.ts'
import { events, payloads } from '../support/sse.ts'

type Chunk = {
  id: string
  created: number
  choices: { delta: Record<string, string | null>; finish_reason: string | null }[]
  usage?: { prompt_tokens: number; total_tokens: number; completion_tokens: number }
}

const SMALL = 'reasoning_tokens=2 content_tokens=2'
const quote = (text: unknown) => JSON.stringify(text)

/** vLLM's count: the R1-Distill chat template, tokenized with the Qwen2 BPE (emulatorFor loads it). */
function promptTokensOf(body: Record<string, unknown>): number {
  return countChatPromptTokens(body.messages as { role: string; content: string }[])
}

async function streamText(body: Record<string, unknown>, options = {}): Promise<{ text: string; chunks: Chunk[] }> {
  const emulator = await emulatorV0110(options)
  const response = await post(emulator, '/v1/chat/completions', body)
  const text = await response.text()
  return { text, chunks: payloads(text) as Chunk[] }
}

describe('chat completion stream framing', () => {
  it('reproduces the spec example byte for byte in the reasoning_content era with token ids', async () => {
    const body = chatBody(SMALL, { stream: true, stream_options: { include_usage: true } })
    const { text, chunks } = await streamText(body)
    const [first, r0, r1, c0, c1] = chunks
    const head = `{"id":"${first?.id}","object":"chat.completion.chunk","created":${first?.created},"model":"${MODEL}"`
    const token = (delta: string) =>
      `data: ${head},"choices":[{"index":0,"delta":{${delta}},"logprobs":null,"finish_reason":null,"token_ids":null}]}\n\n`
    const prompt = promptTokensOf(body)
    expect(text).toBe(
      `data: ${head},"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"prompt_token_ids":null}\n\n` +
        token(`"reasoning_content":${quote(r0?.choices[0]?.delta.reasoning_content)}`) +
        token(`"reasoning_content":${quote(r1?.choices[0]?.delta.reasoning_content)}`) +
        token(`"content":${quote(c0?.choices[0]?.delta.content)}`) +
        token(`"content":${quote(c1?.choices[0]?.delta.content)}`) +
        `data: ${head},"choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"stop","stop_reason":null,"token_ids":null}]}\n\n` +
        `data: ${head},"choices":[],"usage":{"prompt_tokens":${prompt},"total_tokens":${prompt + 6},"completion_tokens":6}}\n\n` +
        'data: [DONE]\n\n',
    )
    expect(first?.id).toMatch(/^chatcmpl-[0-9a-f]{32}$/) // random_uuid(): uuid4().hex
    expect(c0?.choices[0]?.delta.content).toMatch(/^\n\n\S/)
  })

  it('puts reasoning and a reasoning_content mirror in every delta in the "both" era', async () => {
    const { text, chunks } = await streamText(chatBody(SMALL, { stream: true }), { reasoningField: 'both' })
    const [first, r0, r1, c0, c1] = chunks
    const head = `{"id":"${first?.id}","object":"chat.completion.chunk","created":${first?.created},"model":"${MODEL}"`
    const token = (delta: string) =>
      `data: ${head},"choices":[{"index":0,"delta":{${delta}},"logprobs":null,"finish_reason":null,"token_ids":null}]}\n\n`
    const reasoning = (chunk: Chunk | undefined) => quote(chunk?.choices[0]?.delta.reasoning)
    expect(text).toBe(
      `data: ${head},"choices":[{"index":0,"delta":{"role":"assistant","content":"","reasoning_content":null},"logprobs":null,"finish_reason":null}],"prompt_token_ids":null}\n\n` +
        token(`"reasoning":${reasoning(r0)},"reasoning_content":${reasoning(r0)}`) +
        token(`"reasoning":${reasoning(r1)},"reasoning_content":${reasoning(r1)}`) +
        token(`"content":${quote(c0?.choices[0]?.delta.content)},"reasoning_content":null`) +
        token(`"content":${quote(c1?.choices[0]?.delta.content)},"reasoning_content":null`) +
        `data: ${head},"choices":[{"index":0,"delta":{"content":"","reasoning_content":null},"logprobs":null,"finish_reason":"stop","stop_reason":null,"token_ids":null}]}\n\n` +
        'data: [DONE]\n\n',
    )
  })

  it('uses only the reasoning field in the 2026 era and drops token ids when they are off', async () => {
    const options = { reasoningField: 'reasoning' as const, tokenIdsFields: false }
    const { text, chunks } = await streamText(chatBody(SMALL, { stream: true }), options)
    const [first, r0, r1, c0, c1] = chunks
    const head = `{"id":"${first?.id}","object":"chat.completion.chunk","created":${first?.created},"model":"${MODEL}"`
    const token = (delta: string) => `data: ${head},"choices":[{"index":0,"delta":{${delta}},"logprobs":null,"finish_reason":null}]}\n\n`
    expect(text).toBe(
      `data: ${head},"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}\n\n` +
        token(`"reasoning":${quote(r0?.choices[0]?.delta.reasoning)}`) +
        token(`"reasoning":${quote(r1?.choices[0]?.delta.reasoning)}`) +
        token(`"content":${quote(c0?.choices[0]?.delta.content)}`) +
        token(`"content":${quote(c1?.choices[0]?.delta.content)}`) +
        `data: ${head},"choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"stop","stop_reason":null}]}\n\n` +
        'data: [DONE]\n\n',
    )
  })

  it('sends the think text and </think> inside content when no reasoning parser runs', async () => {
    const { chunks } = await streamText(chatBody(SMALL, { stream: true }), { reasoningParser: null })
    const deltas = chunks.map((chunk) => chunk.choices[0]?.delta ?? {})
    expect(deltas.every((delta) => !('reasoning_content' in delta) && !('reasoning' in delta))).toBe(true)
    const content = deltas.map((delta) => delta.content ?? '').join('')
    expect(content).toMatch(/^\S+ \S+<\/think>\n\n\S+ \S+$/u)
    expect(deltas.map((delta) => delta.content)).toContain('</think>')
  })

  it('counts </think> as a completion token without emitting a chunk for it', async () => {
    const body = chatBody('reasoning_tokens=3 content_tokens=4', { stream: true, stream_options: { include_usage: true } })
    const { text, chunks } = await streamText(body)
    expect(text).not.toContain('think>')
    const tokenChunks = chunks.filter((chunk) => chunk.choices[0] !== undefined && !('role' in (chunk.choices[0]?.delta ?? {})))
    // 3 reasoning + 4 content chunks + the finish chunk (EOS); </think> adds a token but no chunk.
    expect(tokenChunks).toHaveLength(8)
    expect(chunks.at(-1)?.usage?.completion_tokens).toBe(3 + 1 + 4 + 1)
  })

  it('sends a usage chunk only when stream_options.include_usage is true', async () => {
    const without = await streamText(chatBody(SMALL, { stream: true, stream_options: { include_usage: false } }))
    expect(without.chunks.some((chunk) => 'usage' in chunk)).toBe(false)
    const withUsage = await streamText(chatBody(SMALL, { stream: true, stream_options: { include_usage: true } }))
    const last = events(withUsage.text).at(-2) ?? ''
    expect(last).toMatch(/^data: \{.*"choices":\[\],"usage":\{"prompt_tokens":\d+,"total_tokens":\d+,"completion_tokens":6\}\}\n\n$/)
  })

  it('puts running usage on every chunk with continuous_usage_stats', async () => {
    const options = { include_usage: true, continuous_usage_stats: true }
    const { text, chunks } = await streamText(chatBody(SMALL, { stream: true, stream_options: options }))
    expect(chunks.every((chunk) => chunk.usage !== undefined)).toBe(true)
    // role 0, reasoning 1 and 2, content 4 and 5 (</think> was token 3), finish 6, final usage 6
    expect(chunks.map((chunk) => chunk.usage?.completion_tokens)).toEqual([0, 1, 2, 4, 5, 6, 6])
    expect(events(text)[0]).toMatch(
      /"finish_reason":null\}\],"usage":\{"prompt_tokens":\d+,"total_tokens":\d+,"completion_tokens":0\},"prompt_token_ids":null\}\n\n$/,
    )
  })

  it('ignores continuous_usage_stats when include_usage is false, as vLLM does', async () => {
    const options = { include_usage: false, continuous_usage_stats: true }
    const { chunks } = await streamText(chatBody(SMALL, { stream: true, stream_options: options }))
    expect(chunks.some((chunk) => 'usage' in chunk)).toBe(false)
  })

  it('stops at max_tokens with finish_reason "length" on the chunk of the last token', async () => {
    const body = chatBody(SMALL, { stream: true, max_tokens: 2, stream_options: { include_usage: true } })
    const { text, chunks } = await streamText(body)
    const finish = chunks.find((chunk) => chunk.choices[0]?.finish_reason !== null && chunk.choices.length > 0)
    expect(finish?.choices[0]?.finish_reason).toBe('length')
    expect(finish?.choices[0]?.delta.reasoning_content).toMatch(/^ \S+$/u)
    expect(chunks.at(-1)?.usage?.completion_tokens).toBe(2)
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true)
  })

  it('honours max_completion_tokens over max_tokens', async () => {
    const body = chatBody(SMALL, { stream: true, max_tokens: 100, max_completion_tokens: 1 })
    const { chunks } = await streamText(body)
    expect(chunks).toHaveLength(2)
    expect(chunks[1]?.choices[0]?.finish_reason).toBe('length')
  })

  it('shares one id and created across every chunk of a response', async () => {
    const { chunks } = await streamText(chatBody('', { stream: true, stream_options: { include_usage: true } }))
    expect(chunks.length).toBeGreaterThan(10)
    expect(new Set(chunks.map((chunk) => chunk.id)).size).toBe(1)
    expect(new Set(chunks.map((chunk) => chunk.created)).size).toBe(1)
  })
})
