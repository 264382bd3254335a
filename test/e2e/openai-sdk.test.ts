// The real stack from the outside: the Worker bundle built as for a deploy, served by workerd
// (Miniflare), two vLLM emulator processes behind it, and the official `openai` SDK as the client.
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  buildPrivateWorker,
  serveWorker,
  spawnEmulator,
  reasoningBackendArgs,
  type RunningEmulator,
  type ServedWorker,
} from '../../scripts/stack.ts'

const MODEL = 'deepseek-r1-distill-qwen-1.5b'
const BACKEND_KEY = 'e2e-backend-key'
const CLIENT_KEY = `sk-${'e'.repeat(43)}`
/** A key allowed one request per minute. */
const ONE_RPM_KEY = `sk-${'o'.repeat(43)}`

let emulators: RunningEmulator[] = []
let worker: ServedWorker
let client: OpenAI

/** What the SDK's chunk type does not declare: the reasoning text the gateway adds. */
type ReasoningDelta = { reasoning_content?: string }

beforeAll(async () => {
  const args = reasoningBackendArgs(MODEL, BACKEND_KEY, { ttftMs: 20, itlMs: 3 })
  const [script, ...started] = await Promise.all([buildPrivateWorker(), spawnEmulator(args), spawnEmulator(args)])
  emulators = started
  worker = await serveWorker(
    script,
    { BACKEND_URLS: emulators.map((e) => e.url).join(','), BACKEND_API_KEY: BACKEND_KEY },
    {
      keys: [
        { secret: CLIENT_KEY, fields: { scopes: ['chat'] } },
        {
          secret: ONE_RPM_KEY,
          fields: { limits: { requestsPerMinute: 1, tokensPerMinute: null, concurrentStreams: null, maxOutputTokens: null } },
        },
      ],
    },
  )
  client = new OpenAI({ baseURL: `${worker.url}/v1`, apiKey: CLIENT_KEY, maxRetries: 0 })
})

afterAll(async () => {
  await worker?.dispose()
  await Promise.all(emulators.map((emulator) => emulator.stop()))
})

async function abortedTotal(): Promise<number> {
  const stats = await Promise.all(
    emulators.map(async (e) => (await (await fetch(`${e.url}/emulator/stats`)).json()) as { aborted: number }),
  )
  return stats.reduce((sum, s) => sum + s.aborted, 0)
}

describe('the official openai SDK against the Worker', () => {
  it('raises AuthenticationError for an unknown key', async () => {
    const stranger = new OpenAI({ baseURL: `${worker.url}/v1`, apiKey: `sk-${'u'.repeat(43)}`, maxRetries: 0 })
    await expect(stranger.models.list()).rejects.toBeInstanceOf(OpenAI.AuthenticationError)
  })

  it('lists the model', async () => {
    const models = await client.models.list()
    expect(models.data.map((model) => model.id)).toEqual([MODEL])
  })

  it('gets a non-streaming completion with reasoning and an answer', async () => {
    const completion = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'What is 7 * 6?' }] })
    const message = completion.choices[0]?.message as OpenAI.ChatCompletionMessage & ReasoningDelta
    expect(completion.object).toBe('chat.completion')
    expect(message.content).toMatch(/\S/)
    expect(message.reasoning_content).toMatch(/\S/)
    expect(completion.usage?.total_tokens).toBeGreaterThan(0)
  })

  it('gets a non-streaming completion that takes longer than the 1 s commit (its 200 sent early, whitespace before the JSON)', async () => {
    const content = '[emulator ttft_ms=1300 reasoning_tokens=3 content_tokens=3] What is 7 * 6?'
    const completion = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content }] })
    const message = completion.choices[0]?.message as OpenAI.ChatCompletionMessage & ReasoningDelta
    expect(completion.object).toBe('chat.completion')
    expect(message.content).toMatch(/\S/)
    expect(message.reasoning_content).toMatch(/\S/)
    expect(completion.choices[0]?.finish_reason).toBe('stop')
  })

  it('raises, rather than returning an error object as a completion, when a non-streaming answer fails after its 200', async () => {
    // Both backends die after two tokens, 1.3 s in: the 200 went out at 1 s.
    const body = { model: MODEL, messages: [{ role: 'user' as const, content: '[emulator ttft_ms=1300 fault=die_after:2]' }] }
    await expect(client.chat.completions.create(body)).rejects.toThrow()
    // What came before the connection was cut: whitespace, then the error object, for whoever reads the bytes.
    const response = await fetch(`${worker.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_KEY}` },
      body: JSON.stringify(body),
    })
    expect(response.status).toBe(200)
    const reader = response.body!.getReader()
    let text = ''
    const read = async () => {
      for (;;) {
        const { done, value } = await reader.read()
        if (done) return
        text += new TextDecoder().decode(value)
      }
    }
    await expect(read()).rejects.toThrow()
    expect(JSON.parse(text)).toMatchObject({ error: { type: 'server_error', code: 'upstream_connection_lost' } })
  })

  it('streams with for await, losing nothing compared with the backend itself', async () => {
    const request = { model: MODEL, messages: [{ role: 'user' as const, content: 'Count to three.' }], seed: 7 }
    const stream = await client.chat.completions.create({ ...request, stream: true, stream_options: { include_usage: true } })
    let content = ''
    let reasoning = ''
    let usage: OpenAI.CompletionUsage | null | undefined
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta as (OpenAI.ChatCompletionChunk.Choice.Delta & ReasoningDelta) | undefined
      content += delta?.content ?? ''
      reasoning += delta?.reasoning_content ?? ''
      usage = chunk.usage ?? usage
    }
    const direct = new OpenAI({ baseURL: `${emulators[0]!.url}/v1`, apiKey: BACKEND_KEY, maxRetries: 0 })
    const reference = (await direct.chat.completions.create(request)).choices[0]?.message as OpenAI.ChatCompletionMessage &
      ReasoningDelta & { reasoning?: string }
    expect(content).toBe(reference.content)
    // The backend (vLLM v0.20.2, the emulator's default) says `reasoning`; the gateway gives clients reasoning_content.
    expect(reasoning).toBe(reference.reasoning ?? reference.reasoning_content)
    expect(usage?.completion_tokens).toBeGreaterThan(0)
  })

  it.each([
    [400, OpenAI.BadRequestError],
    [404, OpenAI.NotFoundError],
    [429, OpenAI.RateLimitError],
    [503, OpenAI.InternalServerError],
  ])('raises the typed error for a backend refusal with status %i', async (status, ErrorClass) => {
    const attempt = client.chat.completions.create({
      model: MODEL,
      stream: true,
      messages: [{ role: 'user', content: `[emulator fault=refuse:${status}]` }],
    })
    await expect(attempt).rejects.toBeInstanceOf(ErrorClass)
    await expect(attempt).rejects.toMatchObject({ status })
  })

  it('raises RateLimitError, with the rate-limit headers, when the key is over its limit', async () => {
    const limited = new OpenAI({ baseURL: `${worker.url}/v1`, apiKey: ONE_RPM_KEY, maxRetries: 0 })
    const { response } = await limited.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }] }).withResponse()
    expect(response.headers.get('x-ratelimit-remaining-requests')).toBe('0')
    const refused = limited.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi again' }] })
    await expect(refused).rejects.toBeInstanceOf(OpenAI.RateLimitError)
    const error = (await refused.catch((e: unknown) => e)) as InstanceType<typeof OpenAI.RateLimitError>
    expect(error.status).toBe(429)
    expect(error.code).toBe('rate_limit_exceeded')
    expect(error.type).toBe('requests')
    expect(error.headers.get('x-ratelimit-limit-requests')).toBe('1')
    expect(Number(error.headers.get('retry-after'))).toBeGreaterThan(0)
  })

  it('raises an APIError inside for await when the backend dies mid-stream', async () => {
    const stream = await client.chat.completions.create({
      model: MODEL,
      stream: true,
      messages: [{ role: 'user', content: '[emulator fault=die_after:3]' }],
    })
    const consume = async () => {
      for await (const chunk of stream) void chunk
    }
    await expect(consume()).rejects.toBeInstanceOf(OpenAI.APIError)
  })

  it('stops the backend generating within a second when the client aborts', async () => {
    const before = await abortedTotal()
    const controller = new AbortController()
    const stream = await client.chat.completions.create(
      { model: MODEL, stream: true, messages: [{ role: 'user', content: '[emulator itl_ms=50 reasoning_tokens=500]' }] },
      { signal: controller.signal },
    )
    let seen = 0
    try {
      for await (const chunk of stream) {
        void chunk
        if (++seen === 3) controller.abort()
      }
    } catch (error) {
      // Depending on timing the SDK ends the loop or throws its user-abort error.
      expect(error).toBeInstanceOf(OpenAI.APIUserAbortError)
    }
    expect(seen).toBe(3)
    const abortedAt = Date.now()
    while ((await abortedTotal()) === before && Date.now() - abortedAt < 1_000) await new Promise((r) => setTimeout(r, 20))
    expect(await abortedTotal()).toBe(before + 1)
    expect(Date.now() - abortedAt).toBeLessThan(1_000)
  })
})
