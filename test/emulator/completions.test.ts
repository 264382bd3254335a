import { describe, expect, it } from 'vitest'
import { emulatorFor, MODEL, post } from './helpers.ts'
import { payloads } from '../support/sse.ts'

type TextChunk = { id: string; created: number; choices: { text: string; finish_reason: string | null }[] }

// Qwen2 BPE: The| capital| of| France| is = 5 tokens, + BOS (add_special_tokens defaults to true) = 6
const PROMPT = 'The capital of France is'

describe('/v1/completions', () => {
  it('streams text_completion chunks with every field, no role chunk, and 16 tokens by default', async () => {
    const emulator = await emulatorFor()
    const body = { model: MODEL, prompt: PROMPT, stream: true, stream_options: { include_usage: true } }
    const text = await (await post(emulator, '/v1/completions', body)).text()
    const chunks = payloads(text) as TextChunk[]
    const first = chunks[0]
    expect(first?.id).toMatch(/^cmpl-[0-9a-f]{32}$/) // random_uuid(): uuid4().hex
    const head = `{"id":"${first?.id}","object":"text_completion","created":${first?.created},"model":"${MODEL}"`
    const chunk = (index: number, reason: string) =>
      `data: ${head},"choices":[{"index":0,"text":${JSON.stringify(chunks[index]?.choices[0]?.text)},"logprobs":null,` +
      `"finish_reason":${reason},"stop_reason":null,"prompt_token_ids":null,"token_ids":null}],"usage":null}\n\n`
    const expected =
      Array.from({ length: 15 }, (_, index) => chunk(index, 'null')).join('') +
      chunk(15, '"length"') +
      `data: ${head},"choices":[],"usage":{"prompt_tokens":6,"total_tokens":22,"completion_tokens":16}}\n\n` +
      'data: [DONE]\n\n'
    expect(text).toBe(expected)
    expect(chunks.slice(0, 16).every((c) => /^ \S+$/u.test(c.choices[0]?.text ?? ''))).toBe(true)
  })

  it('finishes with "stop" on an empty-text chunk when the text ends before max_tokens', async () => {
    const emulator = await emulatorFor({ contentTokens: 3, tokenIdsFields: false })
    const text = await (await post(emulator, '/v1/completions', { prompt: PROMPT, max_tokens: 50, stream: true })).text()
    const chunks = payloads(text) as TextChunk[]
    expect(chunks).toHaveLength(4)
    expect(chunks[3]?.choices[0]).toEqual({ index: 0, text: '', logprobs: null, finish_reason: 'stop', stop_reason: null })
  })

  it('answers stream: false with one text_completion body', async () => {
    const emulator = await emulatorFor({ contentTokens: 2 })
    const response = await post(emulator, '/v1/completions', { prompt: PROMPT, max_tokens: 10 })
    const text = await response.text()
    const body = JSON.parse(text) as TextChunk
    expect(text).toBe(
      `{"id":"${body.id}","object":"text_completion","created":${body.created},"model":"${MODEL}","choices":[{"index":0,` +
        `"text":${JSON.stringify(body.choices[0]?.text)},"logprobs":null,"finish_reason":"stop","stop_reason":null,"token_ids":null,` +
        '"prompt_logprobs":null,"prompt_token_ids":null}],"service_tier":null,"system_fingerprint":null,' +
        '"usage":{"prompt_tokens":6,"total_tokens":9,"completion_tokens":3,"prompt_tokens_details":null},"kv_transfer_params":null}',
    )
  })

  it('rejects a request without a prompt', async () => {
    const emulator = await emulatorFor()
    const response = await post(emulator, '/v1/completions', { model: MODEL })
    expect(response.status).toBe(400)
    expect(await response.text()).toContain('Either prompt or prompt_embeds must be provided and non-empty.')
  })
})
