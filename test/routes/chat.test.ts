import { afterEach, describe, expect, it, vi } from 'vitest'
import { TEST_SECRET } from '../support/keys.ts'
import { dataEvents, frameReader, frames } from '../support/sse.ts'
import { MODEL, chatBody, configureEmulator, emulatorStats, postChat, recordedRequests, resetEmulator } from '../support/worker.ts'

interface Chunk {
  id: string
  object: string
  choices: { index: number; delta: Record<string, unknown>; finish_reason: string | null }[]
  usage?: { completion_tokens: number }
}

async function streamChat(text: string, extra: Record<string, unknown> = {}) {
  const response = await postChat(chatBody(text, { stream: true, ...extra }))
  return { response, frames: frames(await response.text()) }
}

afterEach(async () => {
  await configureEmulator({ reasoningField: 'reasoning_content', errorFormat: 'current', fault: 'none' })
})

describe('POST /v1/chat/completions, stream: true', () => {
  it('relays role, reasoning, answer, finish and [DONE] as an event stream', async () => {
    const { response, frames: sent } = await streamChat('What is 7 * 6?')
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('text/event-stream; charset=utf-8')
    expect(sent.at(-1)).toBe('data: [DONE]')
    const chunks = dataEvents(sent) as Chunk[]
    expect(chunks[0]?.choices[0]?.delta).toEqual({ role: 'assistant', content: '' })
    expect(new Set(chunks.map((chunk) => chunk.id)).size).toBe(1)
    const deltas = chunks.map((chunk) => chunk.choices[0]?.delta ?? {})
    const firstAnswer = deltas.findIndex((delta) => typeof delta.content === 'string' && delta.content !== '')
    const lastReasoning = deltas.findLastIndex((delta) => 'reasoning_content' in delta)
    expect(lastReasoning).toBeGreaterThan(0)
    expect(firstAnswer).toBeGreaterThan(lastReasoning)
    expect(chunks.at(-1)?.choices[0]?.finish_reason).toBe('stop')
  })

  it.each(['reasoning_content', 'both', 'reasoning'])(
    'gives clients reasoning_content whichever field the backend uses (%s)',
    async (reasoningField) => {
      await configureEmulator({ reasoningField })
      const chunks = dataEvents((await streamChat('Think.')).frames) as Chunk[]
      const deltas = chunks.flatMap((chunk) => chunk.choices.map((choice) => choice.delta))
      expect(deltas.some((delta) => 'reasoning' in delta)).toBe(false)
      expect(deltas.some((delta) => delta.reasoning_content === null)).toBe(false)
      expect(deltas.filter((delta) => typeof delta.reasoning_content === 'string').length).toBeGreaterThan(0)
    },
  )

  it('hides the usage chunk unless the client asked for it, and shows it when asked', async () => {
    const plain = dataEvents((await streamChat('Hi')).frames) as Chunk[]
    expect(plain.some((chunk) => chunk.choices.length === 0)).toBe(false)
    const withUsage = dataEvents((await streamChat('Hi', { stream_options: { include_usage: true } })).frames) as Chunk[]
    expect(withUsage.at(-1)?.choices).toEqual([])
    expect(withUsage.at(-1)?.usage?.completion_tokens).toBeGreaterThan(0)
  })

  it('asks the backend for usage always, with only known fields and the served model', async () => {
    await postChat(chatBody('Hi', { stream: true, temperature: 0.6, surprise_field: 1 })).then((r) => r.text())
    const upstream = (await recordedRequests()).at(-1)
    expect(upstream?.path).toBe('/v1/chat/completions')
    expect(upstream?.body).toMatchObject({ model: MODEL, stream: true, stream_options: { include_usage: true }, temperature: 0.6 })
    expect(upstream?.body).not.toHaveProperty('surprise_field')
  })

  it("never forwards the client's Authorization, cookies or hop-by-hop headers, and uses the backend key", async () => {
    const response = await postChat(chatBody('Hi', { stream: true }), {
      headers: { cookie: 'session=1', te: 'trailers', 'x-custom': '1', 'keep-alive': 'timeout=5' },
    })
    const text = await response.text()
    // The client's own key (TEST_SECRET) is a valid gateway key; the emulator accepts only its
    // --api-key, so a stream that completed proves the backend key replaced the client's.
    expect(text.endsWith('data: [DONE]\n\n')).toBe(true)
    const headers = (await recordedRequests()).at(-1)?.headers ?? {}
    expect(headers.authorization).toBe('<redacted>')
    for (const name of ['cookie', 'te', 'x-custom', 'keep-alive']) expect(headers).not.toHaveProperty(name)
    expect(text).not.toContain('test-backend-key')
    expect(text).not.toContain(TEST_SECRET)
  })

  it('relays an error event and [DONE] when the backend fails mid-stream (vLLM error event)', async () => {
    const { response, frames: sent } = await streamChat('[emulator fault=error_after:2]')
    expect(response.status).toBe(200)
    expect(sent.at(-2)).toMatch(/^data: \{"error": \{"message": /)
    expect(sent.at(-1)).toBe('data: [DONE]')
  })

  it('ends with an error event and [DONE] when the backend connection dies mid-stream', async () => {
    const { frames: sent } = await streamChat('[emulator fault=die_after:3]')
    const tokens = (dataEvents(sent) as Chunk[]).filter((chunk) => !('error' in chunk) && !chunk.choices[0]?.delta.role)
    expect(tokens).toHaveLength(3)
    expect(sent.at(-2)).toBe(
      'data: {"error": {"message": "The connection to the backend was lost mid-stream.", "type": "server_error", "param": null, "code": 502}}',
    )
    expect(sent.at(-1)).toBe('data: [DONE]')
  })

  it('ends with an error event and [DONE] when the backend sends malformed SSE', async () => {
    const { frames: sent } = await streamChat('[emulator fault=malformed_after:2]')
    expect(sent.at(-2)).toContain('The backend sent a malformed event.')
    expect(sent.at(-1)).toBe('data: [DONE]')
  })

  it('stops the generation on the backend within a second of the client going away', async () => {
    await resetEmulator()
    const controller = new AbortController()
    const response = await postChat(chatBody('[emulator itl_ms=50 reasoning_tokens=400]', { stream: true }), {
      signal: controller.signal,
    })
    const client = frameReader(response.body!)
    await client.next()
    await client.next()
    const abortedAt = Date.now()
    controller.abort()
    await vi.waitFor(async () => expect((await emulatorStats()).aborted).toBe(1), { timeout: 1_000, interval: 20 })
    expect(Date.now() - abortedAt).toBeLessThan(1_000)
    const generated = (await emulatorStats()).tokensGenerated
    await new Promise((resolve) => setTimeout(resolve, 150))
    expect((await emulatorStats()).tokensGenerated).toBe(generated)
    expect((await emulatorStats()).inFlight).toBe(0)
  })
})

describe('POST /v1/chat/completions, stream: false', () => {
  it('returns one chat.completion with the reasoning and the answer of the stream', async () => {
    const response = await postChat(chatBody('What is 7 * 6?'))
    expect(response.status).toBe(200)
    const completion = (await response.json()) as {
      object: string
      model: string
      choices: { message: { role: string; content: string; reasoning_content: string }; finish_reason: string }[]
      usage: { completion_tokens: number }
    }
    expect(completion.object).toBe('chat.completion')
    expect(completion.model).toBe(MODEL)
    const streamed = dataEvents((await streamChat('What is 7 * 6?')).frames) as Chunk[]
    const joined = (field: string) => streamed.map((chunk) => chunk.choices[0]?.delta[field] ?? '').join('')
    expect(completion.choices[0]?.message).toEqual({
      role: 'assistant',
      content: joined('content'),
      reasoning_content: joined('reasoning_content'),
    })
    expect(completion.choices[0]?.finish_reason).toBe('stop')
    expect(completion.usage.completion_tokens).toBeGreaterThan(0)
  })

  it('carries the stop_reason of a matched stop string after finish_reason, as vLLM does', async () => {
    const text = '[emulator reasoning_tokens=4 content_tokens=12] Hi'
    const streamed = dataEvents((await streamChat(text)).frames) as Chunk[]
    const answer = streamed.map((chunk) => chunk.choices[0]?.delta.content ?? '').join('')
    const stop = answer.slice(6, 10)
    const stopped = dataEvents((await streamChat(text, { stop })).frames) as Chunk[]
    expect(stopped.find((chunk) => chunk.choices[0]?.finish_reason)?.choices[0]).toMatchObject({ finish_reason: 'stop', stop_reason: stop })
    const completion = (await (await postChat(chatBody(text, { stop }))).json()) as { choices: Record<string, unknown>[] }
    const choice = completion.choices[0] ?? {}
    expect(choice).toMatchObject({
      finish_reason: 'stop',
      stop_reason: stop,
      message: { content: stopped.map((chunk) => chunk.choices[0]?.delta.content ?? '').join('') },
    })
    expect(Object.keys(choice)).toEqual(['index', 'message', 'logprobs', 'finish_reason', 'stop_reason'])
    const plain = (await (await postChat(chatBody(text))).json()) as { choices: Record<string, unknown>[] }
    expect(plain.choices[0]).toMatchObject({ finish_reason: 'stop', stop_reason: null })
  })

  it('gives content null, not "", when the answer was cut off inside the reasoning, as vLLM does', async () => {
    const response = await postChat(chatBody('[emulator reasoning_tokens=10 content_tokens=5] Hi', { max_tokens: 3 }))
    const completion = (await response.json()) as { choices: { message: Record<string, unknown>; finish_reason: string }[] }
    expect(completion.choices[0]?.finish_reason).toBe('length')
    expect(completion.choices[0]?.message).toMatchObject({ role: 'assistant', content: null })
    expect(completion.choices[0]?.message.reasoning_content).toMatch(/\S/)
  })

  it('answers a mid-stream backend failure with a 502 error body', async () => {
    const response = await postChat(chatBody('[emulator fault=die_after:2]'))
    expect(response.status).toBe(502)
    expect(await response.json()).toMatchObject({ error: { code: 'upstream_connection_lost', type: 'server_error' } })
  })
})
