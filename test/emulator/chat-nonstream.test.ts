import { describe, expect, it } from 'vitest'
import { chatBody, emulatorV0110, MODEL, post } from './helpers.ts'

type Completion = {
  id: string
  created: number
  choices: { message: Record<string, unknown>; finish_reason: string }[]
  usage: { prompt_tokens: number; completion_tokens: number }
}

async function complete(body: Record<string, unknown>, options = {}): Promise<{ text: string; json: Completion; response: Response }> {
  const emulator = await emulatorV0110(options)
  const response = await post(emulator, '/v1/chat/completions', body)
  const text = await response.text()
  return { text, json: JSON.parse(text) as Completion, response }
}

describe('chat completion without streaming', () => {
  it('answers one chat.completion with every vLLM field in declaration order', async () => {
    const { text, json, response } = await complete(chatBody('reasoning_tokens=2 content_tokens=2'))
    expect(response.headers.get('content-type')).toBe('application/json')
    const message = json.choices[0]?.message ?? {}
    const prompt = json.usage.prompt_tokens
    expect(text).toBe(
      `{"id":"${json.id}","object":"chat.completion","created":${json.created},"model":"${MODEL}",` +
        `"choices":[{"index":0,"message":{"role":"assistant","content":${JSON.stringify(message.content)},"refusal":null,` +
        `"annotations":null,"audio":null,"function_call":null,"tool_calls":[],"reasoning_content":${JSON.stringify(message.reasoning_content)}},` +
        `"logprobs":null,"finish_reason":"stop","stop_reason":null,"token_ids":null}],"service_tier":null,"system_fingerprint":null,` +
        `"usage":{"prompt_tokens":${prompt},"total_tokens":${prompt + 6},"completion_tokens":6,"prompt_tokens_details":null},` +
        `"prompt_logprobs":null,"prompt_token_ids":null,"kv_transfer_params":null}`,
    )
    expect(message.content).toMatch(/^\n\n\S+ \S+$/u)
    expect(message.reasoning_content).toMatch(/^\S+ \S+$/u)
  })

  it('drops the token-id fields when they are off', async () => {
    const { text } = await complete(chatBody('reasoning_tokens=1 content_tokens=1'), { tokenIdsFields: false })
    expect(text).not.toContain('token_ids')
    expect(text).toContain('"stop_reason":null}],"service_tier":null')
  })

  it('gives both reasoning and reasoning_content in the "both" era, only reasoning in 2026', async () => {
    const both = await complete(chatBody('reasoning_tokens=2 content_tokens=1'), { reasoningField: 'both' })
    const bothMessage = both.json.choices[0]?.message ?? {}
    expect(Object.keys(bothMessage).slice(-3)).toEqual(['tool_calls', 'reasoning', 'reasoning_content'])
    expect(bothMessage.reasoning_content).toBe(bothMessage.reasoning)
    const latest = await complete(chatBody('reasoning_tokens=2 content_tokens=1'), { reasoningField: 'reasoning' })
    expect(Object.keys(latest.json.choices[0]?.message ?? {}).slice(-2)).toEqual(['tool_calls', 'reasoning'])
  })

  it('puts everything in content, reasoning_content null, without a reasoning parser', async () => {
    const { json } = await complete(chatBody('reasoning_tokens=2 content_tokens=2'), { reasoningParser: null })
    const message = json.choices[0]?.message ?? {}
    expect(message.reasoning_content).toBeNull()
    expect(message.content).toMatch(/^\S+ \S+<\/think>\n\n\S+ \S+$/u)
  })

  it('reports "length" and null content when max_tokens ends the answer inside the reasoning', async () => {
    const { json } = await complete(chatBody('reasoning_tokens=5 content_tokens=2', { max_tokens: 3 }))
    expect(json.choices[0]?.finish_reason).toBe('length')
    expect(json.choices[0]?.message.content).toBeNull()
    expect(json.choices[0]?.message.reasoning_content).toMatch(/^\S+ \S+ \S+$/u)
    expect(json.usage.completion_tokens).toBe(3)
  })
})
