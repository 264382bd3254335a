// The Anthropic Messages API from the outside: the Worker bundle built as for a deploy, served by
// workerd (Miniflare), two vLLM emulator processes behind it (vLLM v0.20.2's, which serves its own
// /v1/messages, used here as the reference), and the official `@anthropic-ai/sdk` as the client,
// sending its key in x-api-key as it does by default.
import Anthropic from '@anthropic-ai/sdk'
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
const CLIENT_KEY = `sk-${'a'.repeat(43)}`

let emulators: RunningEmulator[] = []
let worker: ServedWorker
let client: Anthropic

beforeAll(async () => {
  const args = reasoningBackendArgs(MODEL, BACKEND_KEY, { ttftMs: 20, itlMs: 3 })
  const [script, ...started] = await Promise.all([buildPrivateWorker(), spawnEmulator(args), spawnEmulator(args)])
  emulators = started
  worker = await serveWorker(
    script,
    { BACKEND_URLS: emulators.map((e) => e.url).join(','), BACKEND_API_KEY: BACKEND_KEY },
    { keys: [{ secret: CLIENT_KEY, fields: { scopes: ['chat'] } }] },
  )
  client = new Anthropic({ baseURL: worker.url, apiKey: CLIENT_KEY, maxRetries: 0 })
})

afterAll(async () => {
  await worker?.dispose()
  await Promise.all(emulators.map((emulator) => emulator.stop()))
})

type StreamEvent = Anthropic.MessageStreamEvent

/** The block structure of an event stream: each block's type and its whole text. */
function blocksOf(events: readonly StreamEvent[]): { type: string; text: string }[] {
  const blocks: { type: string; text: string }[] = []
  for (const event of events) {
    if (event.type === 'content_block_start') blocks[event.index] = { type: event.content_block.type, text: '' }
    if (event.type !== 'content_block_delta') continue
    const block = blocks[event.index]
    if (!block) throw new Error(`a delta for block ${event.index}, which was not started`)
    if (event.delta.type === 'thinking_delta') block.text += event.delta.thinking
    if (event.delta.type === 'text_delta') block.text += event.delta.text
  }
  return blocks
}

/** The raw events of a Messages stream (event: NAME, data: JSON), from the gateway or the emulator. */
async function rawEvents(response: Response): Promise<StreamEvent[]> {
  const text = await response.text()
  return text
    .split('\n\n')
    .filter((frame) => frame.startsWith('event: '))
    .map((frame) => JSON.parse(frame.split('\n')[1]!.slice('data: '.length)) as StreamEvent)
    .filter((event) => (event.type as string) !== 'ping')
}

describe('the official @anthropic-ai/sdk against the Worker', () => {
  it('creates a message: only text when thinking was not asked for', async () => {
    const message = await client.messages.create({
      model: MODEL,
      max_tokens: 1024,
      messages: [{ role: 'user', content: 'What is 7 * 6?' }],
    })
    expect(message.type).toBe('message')
    expect(message.id).toMatch(/^msg_/)
    expect(message.content.map((block) => block.type)).toEqual(['text'])
    const [first] = message.content
    expect(first?.type === 'text' && first.text).toMatch(/\S/)
    expect(message.stop_reason).toBe('end_turn')
    expect(message.usage.input_tokens).toBeGreaterThan(0)
    expect(message.usage.output_tokens).toBeGreaterThan(0)
  })

  it('creates a message with thinking: a thinking block with its signature, then the text', async () => {
    const message = await client.messages.create({
      model: MODEL,
      max_tokens: 2048,
      thinking: { type: 'enabled', budget_tokens: 1024 },
      messages: [{ role: 'user', content: 'What is 7 * 6?' }],
    })
    expect(message.content.map((block) => block.type)).toEqual(['thinking', 'text'])
    const [thinking, text] = message.content
    expect(thinking?.type === 'thinking' && thinking.thinking).toMatch(/\S/)
    expect(thinking?.type === 'thinking' && thinking.signature).toMatch(/^[0-9a-f]{32}$/)
    expect(text?.type === 'text' && text.text).toMatch(/\S/)
    // The thinking sent back in the next turn is taken (and dropped before the prompt).
    const next = await client.messages.create({
      model: MODEL,
      max_tokens: 2048,
      thinking: { type: 'enabled', budget_tokens: 1024 },
      messages: [
        { role: 'user', content: 'What is 7 * 6?' },
        { role: 'assistant', content: message.content },
        { role: 'user', content: 'And 6 * 7?' },
      ],
    })
    expect(next.stop_reason).toBe('end_turn')
  })

  it('streams text and thinking events, and finalMessage() has both blocks', async () => {
    const stream = client.messages.stream({
      model: MODEL,
      max_tokens: 2048,
      thinking: { type: 'enabled', budget_tokens: 1024 },
      messages: [{ role: 'user', content: 'Count to three.' }],
    })
    let thinking = ''
    let text = ''
    let signature = ''
    stream.on('thinking', (delta) => (thinking += delta))
    stream.on('text', (delta) => (text += delta))
    stream.on('signature', (value) => (signature = value))
    const message = await stream.finalMessage()
    expect(thinking).toMatch(/\S/)
    expect(text).toMatch(/\S/)
    expect(signature).toMatch(/^[0-9a-f]{32}$/)
    expect(message.content.map((block) => block.type)).toEqual(['thinking', 'text'])
    const [first, second] = message.content
    expect(first?.type === 'thinking' && first.thinking).toBe(thinking)
    expect(second?.type === 'text' && second.text).toBe(text)
    expect(message.stop_reason).toBe('end_turn')
    expect(message.usage.output_tokens).toBeGreaterThan(0)
    expect(message.usage.input_tokens).toBeGreaterThan(0)
  })

  it('streams with stream: true, stopping at a stop sequence and at max_tokens', async () => {
    const cut = client.messages.stream({ model: MODEL, max_tokens: 3, messages: [{ role: 'user', content: 'Tell a long story.' }] })
    expect((await cut.finalMessage()).stop_reason).toBe('max_tokens')
    const reference = await client.messages.create({
      model: MODEL,
      max_tokens: 1024,
      messages: [{ role: 'user', content: '[emulator reasoning_tokens=3 content_tokens=10] Say words.' }],
    })
    const word = (reference.content[0]?.type === 'text' ? reference.content[0].text : '').trim().split(/\s+/)[2] ?? ''
    expect(word).not.toBe('')
    const stopped = client.messages.stream({
      model: MODEL,
      max_tokens: 1024,
      stop_sequences: [word],
      messages: [{ role: 'user', content: '[emulator reasoning_tokens=3 content_tokens=10] Say words.' }],
    })
    const message = await stopped.finalMessage()
    expect(message.stop_reason).toBe('stop_sequence')
    expect(message.stop_sequence).toBe(word)
  })

  it('counts tokens: the input_tokens a message of the same prompt reports', async () => {
    const request = { model: MODEL, system: 'Be brief.', messages: [{ role: 'user' as const, content: 'What is 7 * 6?' }] }
    const counted = await client.messages.countTokens(request)
    const message = await client.messages.create({ ...request, max_tokens: 64 })
    expect(counted.input_tokens).toBe(message.usage.input_tokens)
  })

  it('raises AuthenticationError for an unknown key, BadRequestError for a max_tokens over the context', async () => {
    const stranger = new Anthropic({ baseURL: worker.url, apiKey: `sk-${'u'.repeat(43)}`, maxRetries: 0 })
    const unknown = stranger.messages.create({ model: MODEL, max_tokens: 16, messages: [{ role: 'user', content: 'Hi' }] })
    await expect(unknown).rejects.toBeInstanceOf(Anthropic.AuthenticationError)
    const error = (await unknown.catch((e: unknown) => e)) as InstanceType<typeof Anthropic.AuthenticationError>
    expect(error.error).toMatchObject({ type: 'error', error: { type: 'authentication_error' } })
    // The SDK wants a stream for a max_tokens this large unless a timeout is given.
    const oversized = client.messages.create(
      { model: MODEL, max_tokens: 10_000_000, messages: [{ role: 'user', content: 'Hi' }] },
      { timeout: 30_000 },
    )
    await expect(oversized).rejects.toBeInstanceOf(Anthropic.BadRequestError)
    await expect(oversized).rejects.toMatchObject({ status: 400, error: { error: { type: 'invalid_request_error' } } })
    const image = client.messages.create({
      model: MODEL,
      max_tokens: 16,
      messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'url', url: 'https://example.com/a.png' } }] }],
    })
    await expect(image).rejects.toBeInstanceOf(Anthropic.BadRequestError)
  })

  it('raises an APIError from the stream when the backend dies mid-stream', async () => {
    const stream = client.messages.stream({
      model: MODEL,
      max_tokens: 256,
      messages: [{ role: 'user', content: '[emulator fault=die_after:3]' }],
    })
    await expect(stream.finalMessage()).rejects.toBeInstanceOf(Anthropic.APIError)
  })

  it('raises, rather than returning an error object as a message, when a stream: false answer fails after its 200', async () => {
    // Both backends die after two tokens, 1.3 s in: the 200 went out at 1 s.
    const body = {
      model: MODEL,
      max_tokens: 256,
      messages: [{ role: 'user' as const, content: '[emulator ttft_ms=1300 fault=die_after:2]' }],
    }
    await expect(client.messages.create(body)).rejects.toThrow()
    const response = await fetch(`${worker.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': CLIENT_KEY },
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
    expect(JSON.parse(text)).toMatchObject({ type: 'error', error: { type: 'api_error' } })
  })

  it("streams the same block structure and texts as vLLM v0.20.2's own /v1/messages (the emulator's)", async () => {
    const request = {
      model: MODEL,
      max_tokens: 2048,
      stream: true,
      thinking: { type: 'enabled', budget_tokens: 1024 },
      messages: [{ role: 'user', content: 'Count to three.' }],
    }
    const gateway = await fetch(`${worker.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': CLIENT_KEY, 'anthropic-version': '2023-06-01' },
      body: JSON.stringify(request),
    })
    const native = await fetch(`${emulators[0]!.url}/v1/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${BACKEND_KEY}` },
      body: JSON.stringify(request),
    })
    expect(native.status).toBe(200)
    const ours = await rawEvents(gateway)
    const theirs = await rawEvents(native)
    expect(blocksOf(ours)).toEqual(blocksOf(theirs))
    expect(blocksOf(ours).map((block) => block.type)).toEqual(['thinking', 'text'])
    // The same event types in the same order (a signature_delta before the thinking block's stop included).
    const types = (events: StreamEvent[]) =>
      events
        .map((event) => (event.type === 'content_block_delta' ? `delta:${event.delta.type}` : event.type))
        .filter((type, index, all) => type !== all[index - 1])
    expect(types(ours)).toEqual(types(theirs))
    const stop = (events: StreamEvent[]) => events.find((event) => event.type === 'message_delta')
    expect(stop(ours)?.delta.stop_reason).toBe(stop(theirs)?.delta.stop_reason)
  })
})
