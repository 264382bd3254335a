// The Responses API from the outside with the real clients: the Worker bundle built as for a
// deploy, served by workerd (Miniflare), a vLLM emulator behind it, and as clients the official
// `openai` SDK (`client.responses`) and the Vercel AI SDK's default OpenAI provider, which calls
// /v1/responses.
import { createOpenAI } from '@ai-sdk/openai'
import { generateText, streamText } from 'ai'
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
const CLIENT_KEY = `sk-${'r'.repeat(43)}`

// The AI SDK logs a warning when it leaves earlier reasoning out of a store: false conversation,
// which is what the prompt rules want anyway: not news in the test output.
globalThis.AI_SDK_LOG_WARNINGS = false

let emulator: RunningEmulator
let worker: ServedWorker
let client: OpenAI

beforeAll(async () => {
  const args = reasoningBackendArgs(MODEL, BACKEND_KEY, { ttftMs: 20, itlMs: 2 })
  const [script, started] = await Promise.all([buildPrivateWorker(), spawnEmulator(args)])
  emulator = started
  worker = await serveWorker(
    script,
    { BACKEND_URLS: emulator.url, BACKEND_API_KEY: BACKEND_KEY },
    { keys: [{ secret: CLIENT_KEY, fields: { scopes: ['chat'] } }] },
  )
  client = new OpenAI({ baseURL: `${worker.url}/v1`, apiKey: CLIENT_KEY, maxRetries: 0 })
})

afterAll(async () => {
  await worker?.dispose()
  await emulator?.stop()
})

/** The reasoning text of a response's reasoning items. */
function reasoningOf(response: OpenAI.Responses.Response): string {
  return response.output
    .filter((item): item is OpenAI.Responses.ResponseReasoningItem => item.type === 'reasoning')
    .flatMap((item) => item.content ?? [])
    .map((part) => part.text)
    .join('')
}

describe('the official openai SDK on /v1/responses', () => {
  it('creates a response with reasoning, output_text and usage', async () => {
    const response = await client.responses.create({ model: MODEL, input: 'What is 7 * 6?', instructions: 'Be brief.' })
    expect(response.status).toBe('completed')
    expect(response.output_text).toMatch(/\S/)
    expect(reasoningOf(response)).toMatch(/\S/)
    expect(response.usage?.output_tokens_details.reasoning_tokens).toBeGreaterThan(0)
    expect(response.usage?.total_tokens).toBe((response.usage?.input_tokens ?? 0) + (response.usage?.output_tokens ?? 0))
  })

  it('creates a response that takes longer than the 1 s commit (its 200 sent early, whitespace before the JSON)', async () => {
    const input = '[emulator ttft_ms=1300 reasoning_tokens=3 content_tokens=3] What is 7 * 6?'
    const response = await client.responses.create({ model: MODEL, input })
    expect(response.status).toBe('completed')
    expect(response.output_text).toMatch(/\S/)
    expect(reasoningOf(response)).toMatch(/\S/)
  })

  it('streams with for await: the deltas add up to the completed response', async () => {
    const stream = await client.responses.create({ model: MODEL, input: 'Count to three.', stream: true })
    let text = ''
    let reasoning = ''
    let completed: OpenAI.Responses.Response | null = null
    for await (const event of stream) {
      if (event.type === 'response.output_text.delta') text += event.delta
      if (event.type === 'response.reasoning_text.delta') reasoning += event.delta
      if (event.type === 'response.completed') completed = event.response
    }
    expect(completed?.status).toBe('completed')
    expect(text).toMatch(/\S/)
    const message = completed?.output.find((item) => item.type === 'message')
    expect(message?.type === 'message' && message.content[0]?.type === 'output_text' ? message.content[0].text : null).toBe(text)
    expect(reasoningOf(completed as OpenAI.Responses.Response)).toBe(reasoning)
  })

  it('accumulates a stream into stream.finalResponse()', async () => {
    const stream = client.responses.stream({ model: MODEL, input: 'Say hello.' })
    let deltas = ''
    stream.on('response.output_text.delta', (event) => (deltas += event.delta))
    const final = await stream.finalResponse()
    expect(final.status).toBe('completed')
    expect(final.output_text).toBe(deltas)
    expect(final.output.map((item) => item.type)).toEqual(['reasoning', 'message'])
  })

  it('accumulates the reasoning as its summary too when asked for one', async () => {
    const final = await client.responses.stream({ model: MODEL, input: 'Say hello.', reasoning: { summary: 'auto' } }).finalResponse()
    const reasoning = final.output.find((item) => item.type === 'reasoning')
    expect(reasoning?.type === 'reasoning' ? reasoning.summary.map((part) => part.text).join('') : null).toBe(reasoningOf(final))
    expect(reasoningOf(final)).toMatch(/\S/)
  })

  it('takes an earlier response output back as input (stateless multi-turn)', async () => {
    const first = await client.responses.create({ model: MODEL, input: 'Pick a number.', store: false })
    // The output items (a reasoning item and a message) are valid input items; the SDK's output
    // union also holds tool-call items, whose types are not.
    const earlier = first.output as OpenAI.Responses.ResponseInputItem[]
    const second = await client.responses.create({
      model: MODEL,
      store: false,
      input: [{ role: 'user', content: 'Pick a number.' }, ...earlier, { role: 'user', content: 'Double it.' }],
    })
    expect(second.output_text).toMatch(/\S/)
  })

  it('raises BadRequestError naming the field for a previous response that was never stored', async () => {
    const refused = client.responses.create({ model: MODEL, input: 'Hi', previous_response_id: 'resp_123' })
    await expect(refused).rejects.toBeInstanceOf(OpenAI.BadRequestError)
    await expect(refused).rejects.toMatchObject({ param: 'previous_response_id', code: 'previous_response_not_found' })
  })

  it('stops the backend generating when the client aborts a stream', async () => {
    const aborted = async () => ((await (await fetch(`${emulator.url}/emulator/stats`)).json()) as { aborted: number }).aborted
    const before = await aborted()
    const controller = new AbortController()
    const stream = await client.responses.create(
      { model: MODEL, input: '[emulator itl_ms=50 reasoning_tokens=500] Hi', stream: true },
      { signal: controller.signal },
    )
    let deltas = 0
    try {
      for await (const event of stream) {
        if (event.type === 'response.reasoning_text.delta' && ++deltas === 3) controller.abort()
      }
    } catch (error) {
      // Depending on timing the SDK ends the loop or throws its user-abort error.
      expect(error).toBeInstanceOf(OpenAI.APIUserAbortError)
    }
    expect(deltas).toBe(3)
    // Bounded wait: the emulator counts the abort once the Worker's upstream fetch is cancelled.
    for (let i = 0; i < 100 && (await aborted()) === before; i++) await new Promise((resolve) => setTimeout(resolve, 50))
    expect(await aborted()).toBe(before + 1)
  })

  it('raises an APIError from finalResponse() when the backend dies mid-stream', async () => {
    const stream = client.responses.stream({ model: MODEL, input: '[emulator fault=die_after:3] Hi' })
    await expect(stream.finalResponse()).rejects.toBeInstanceOf(OpenAI.APIError)
  })
})

describe('the Vercel AI SDK default OpenAI provider on /v1/responses', () => {
  const provider = () => createOpenAI({ baseURL: `${worker.url}/v1`, apiKey: CLIENT_KEY })
  // The AI SDK reads reasoning only from reasoning summaries: asking for one makes the gateway
  // send the reasoning text as the summary (it has no summarizer). forceReasoning tells the SDK
  // this model id, unknown to it, reasons, so that it sends `reasoning.summary`.
  const withReasoning = { openai: { forceReasoning: true, reasoningSummary: 'auto' } }

  it('generateText gets the answer with the default call', async () => {
    const result = await generateText({ model: provider()(MODEL), prompt: 'What is 7 * 6?' })
    expect(result.text).toMatch(/\S/)
    expect(result.finishReason).toBe('stop')
    expect(result.usage.outputTokens).toBeGreaterThan(0)
    expect(result.usage.outputTokenDetails.reasoningTokens).toBeGreaterThan(0)
  })

  it('generateText gets an answer that takes longer than the 1 s commit (its 200 sent early)', async () => {
    const prompt = '[emulator ttft_ms=1300 reasoning_tokens=3 content_tokens=3] What is 7 * 6?'
    const result = await generateText({ model: provider()(MODEL), prompt })
    expect(result.text).toMatch(/\S/)
    expect(result.finishReason).toBe('stop')
  })

  it('generateText gets the reasoning when it asks for a reasoning summary', async () => {
    const result = await generateText({ model: provider()(MODEL), prompt: 'What is 7 * 6?', providerOptions: withReasoning })
    expect(result.text).toMatch(/\S/)
    expect(result.reasoningText).toMatch(/\S/)
  })

  it('streamText streams the answer and the reasoning', async () => {
    const result = streamText({ model: provider()(MODEL), system: 'Be brief.', prompt: 'Count to three.', providerOptions: withReasoning })
    let text = ''
    let reasoning = ''
    for await (const part of result.fullStream) {
      if (part.type === 'text-delta') text += part.text
      if (part.type === 'reasoning-delta') reasoning += part.text
      if (part.type === 'error') throw part.error
    }
    expect(text).toMatch(/\S/)
    expect(text).toBe(await result.text)
    expect(reasoning).toMatch(/\S/)
    expect(await result.reasoningText).toBe(reasoning)
    expect(await result.finishReason).toBe('stop')
  })

  it('carries a conversation on with the earlier turns sent back when told not to store (store: false)', async () => {
    const options = { openai: { ...withReasoning.openai, store: false } }
    const model = provider()(MODEL)
    const first = await generateText({ model, prompt: 'Pick a number.', providerOptions: options })
    const second = await generateText({
      model,
      providerOptions: options,
      messages: [{ role: 'user', content: 'Pick a number.' }, ...first.response.messages, { role: 'user', content: 'Double it.' }],
    })
    expect(second.text).toMatch(/\S/)
  })

  it('streamText reports a length cut as finish reason length', async () => {
    const result = streamText({ model: provider()(MODEL), prompt: 'Tell a long story.', maxOutputTokens: 3 })
    await result.consumeStream()
    expect(await result.finishReason).toBe('length')
  })
})
