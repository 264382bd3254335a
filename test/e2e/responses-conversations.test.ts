// Stored Responses API conversations from the outside with the real clients: the Worker bundle
// built as for a deploy, served as 3 isolates behind a router that sends each request to one at
// random (sharing the Durable Objects, as a deployment's isolates do), so a conversation's next
// turn usually lands in another isolate than the last; a vLLM emulator behind it. Clients: the
// Vercel AI SDK's default OpenAI provider (store left unset, so it sends `item_reference` for
// earlier assistant output) and the official `openai` SDK (`previous_response_id`, retrieve,
// delete, input_items).
import { createOpenAI } from '@ai-sdk/openai'
import { generateText, streamText, type ModelMessage } from 'ai'
import OpenAI from 'openai'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  buildPrivateWorker,
  serveIsolates,
  spawnEmulator,
  reasoningBackendArgs,
  type RunningEmulator,
  type ServedWorker,
} from '../../scripts/stack.ts'

const MODEL = 'deepseek-r1-distill-qwen-1.5b'
const BACKEND_KEY = 'e2e-backend-key'
const CLIENT_KEY = `sk-${'c'.repeat(43)}`
const OTHER_KEY = `sk-${'o'.repeat(43)}`
const TURNS = 5

// The AI SDK warns about settings it leaves out; not news in the test output.
globalThis.AI_SDK_LOG_WARNINGS = false

let emulator: RunningEmulator
let worker: ServedWorker
let client: OpenAI
let other: OpenAI

beforeAll(async () => {
  const args = reasoningBackendArgs(MODEL, BACKEND_KEY, { ttftMs: 20, itlMs: 2 })
  const [script, started] = await Promise.all([buildPrivateWorker(), spawnEmulator(args)])
  emulator = started
  worker = await serveIsolates(
    script,
    { BACKEND_URLS: emulator.url, BACKEND_API_KEY: BACKEND_KEY },
    {
      isolates: 3,
      keys: [
        { secret: CLIENT_KEY, fields: { scopes: ['chat'] } },
        { secret: OTHER_KEY, fields: { scopes: ['chat'] } },
      ],
    },
  )
  client = new OpenAI({ baseURL: `${worker.url}/v1`, apiKey: CLIENT_KEY, maxRetries: 0 })
  other = new OpenAI({ baseURL: `${worker.url}/v1`, apiKey: OTHER_KEY, maxRetries: 0 })
})

afterAll(async () => {
  await worker?.dispose()
  await emulator?.stop()
})

/** Every input item of a stored response, oldest first, across pages (a small page size makes several). */
async function inputItemsOf(id: string): Promise<OpenAI.Responses.ResponseItem[]> {
  const items: OpenAI.Responses.ResponseItem[] = []
  for await (const item of client.responses.inputItems.list(id, { order: 'asc', limit: 3 })) items.push(item)
  return items
}

/** The text of a message item (input_text or output_text parts); null for other items. */
function textOf(item: OpenAI.Responses.ResponseItem): string | null {
  if (item.type !== 'message') return null
  return (item.content as { type: string; text?: string }[]).map((part) => part.text ?? '').join('')
}

/** The messages of the last chat request the backend received (the emulator keeps recent requests). */
async function lastUpstreamMessages(): Promise<{ role: string; content: string }[]> {
  const log = (await (await fetch(`${emulator.url}/emulator/requests`)).json()) as { path: string; body: { messages?: [] } }[]
  const chat = log.filter((entry) => entry.path === '/v1/chat/completions')
  return chat.at(-1)?.body.messages ?? []
}

/** A conversation as chat messages: each user turn, then its answer (the last turn not answered yet). */
function conversation(userTexts: string[], answers: string[]): { role: string; content: string }[] {
  return userTexts.flatMap((text, i) => [
    { role: 'user', content: text },
    ...(i < userTexts.length - 1 ? [{ role: 'assistant', content: answers[i] as string }] : []),
  ])
}

/** The Responses item ids the AI SDK keeps on an assistant message's parts (providerOptions.openai.itemId). */
function itemIdsOf(messages: ModelMessage[]): string[] {
  return messages.flatMap((message) =>
    message.role === 'assistant' && typeof message.content !== 'string'
      ? message.content.flatMap((part) => {
          const id = ('providerOptions' in part ? part.providerOptions : undefined)?.openai?.itemId
          return typeof id === 'string' ? [id] : []
        })
      : [],
  )
}

describe('the Vercel AI SDK default OpenAI provider, store unset (item_reference for earlier turns)', () => {
  /** The AI SDK's provider with a fetch that keeps each request body it sends. */
  function recordingProvider() {
    const bodies: { input: { type?: string; role?: string; id?: string }[]; store?: boolean; previous_response_id?: string }[] = []
    const recording: typeof fetch = async (input, init) => {
      if (typeof init?.body === 'string') bodies.push(JSON.parse(init.body))
      return fetch(input, init)
    }
    return { bodies, provider: createOpenAI({ baseURL: `${worker.url}/v1`, apiKey: CLIENT_KEY, fetch: recording }) }
  }

  /** Checks the last request and the stored response's input items hold every earlier turn. */
  async function expectWholeConversation(
    bodies: ReturnType<typeof recordingProvider>['bodies'],
    messages: ModelMessage[],
    lastResponseId: string,
    userTexts: string[],
    answers: string[],
  ) {
    expect(bodies).toHaveLength(TURNS)
    const last = bodies.at(-1)!
    expect(last.store).toBeUndefined()
    expect(last.previous_response_id).toBeUndefined()
    // Earlier turns' assistant output went as references to the stored items, not as text.
    const references = last.input.filter((item) => item.type === 'item_reference').map((item) => item.id)
    expect(references.length).toBeGreaterThanOrEqual(TURNS - 1)
    expect(last.input.filter((item) => item.role === 'assistant')).toEqual([])
    expect(last.input.filter((item) => item.role === 'user')).toHaveLength(TURNS)

    // The stored response's input items: the five user messages and every earlier turn's output items.
    const items = await inputItemsOf(lastResponseId)
    const earlierIds = itemIdsOf(messages.slice(0, -1))
    expect(earlierIds.length).toBeGreaterThanOrEqual(TURNS - 1)
    expect(new Set(references)).toEqual(new Set(earlierIds))
    expect(items.map((item) => item.id)).toEqual(expect.arrayContaining(earlierIds))
    const users = items.filter((item) => item.type === 'message' && item.role === 'user').map(textOf)
    expect(users).toEqual(userTexts)
    const assistants = items.filter((item) => item.type === 'message' && item.role === 'assistant')
    expect(assistants).toHaveLength(TURNS - 1)
    expect(assistants.map(textOf)).toEqual(answers.slice(0, -1))
    expect(items.map((item) => item.type)).toEqual([
      ...Array(TURNS - 1)
        .fill(['message', 'reasoning', 'message'])
        .flat(),
      'message',
    ])

    // The backend was given the whole conversation (earlier reasoning left out, as the prompt rules want).
    expect(await lastUpstreamMessages()).toEqual(conversation(userTexts, answers))
  }

  it('generateText carries a 5-turn conversation on', async () => {
    const { bodies, provider } = recordingProvider()
    const model = provider(MODEL)
    const messages: ModelMessage[] = []
    const userTexts: string[] = []
    const answers: string[] = []
    let responseId = ''
    for (let turn = 1; turn <= TURNS; turn++) {
      const text = `Turn ${turn}: pick a number and add ${turn}.`
      userTexts.push(text)
      messages.push({ role: 'user', content: text })
      const result = await generateText({ model, messages })
      expect(result.text, `turn ${turn}`).toMatch(/\S/)
      expect(result.finishReason).toBe('stop')
      answers.push(result.text)
      messages.push(...result.response.messages)
      responseId = result.providerMetadata?.openai?.responseId as string
      expect(responseId).toMatch(/^resp_/)
    }
    await expectWholeConversation(bodies, messages, responseId, userTexts, answers)
  })

  it('streamText carries a 5-turn conversation on, with the reasoning shown', async () => {
    const { bodies, provider } = recordingProvider()
    const model = provider(MODEL)
    // The AI SDK reads reasoning only from reasoning summaries (docs/api.md, the Responses API).
    const providerOptions = { openai: { forceReasoning: true, reasoningSummary: 'auto' } }
    const messages: ModelMessage[] = []
    const userTexts: string[] = []
    const answers: string[] = []
    let responseId = ''
    for (let turn = 1; turn <= TURNS; turn++) {
      const text = `Turn ${turn}: count to ${turn + 2}.`
      userTexts.push(text)
      messages.push({ role: 'user', content: text })
      const result = streamText({ model, messages, providerOptions })
      let streamed = ''
      let reasoning = ''
      for await (const part of result.fullStream) {
        if (part.type === 'text-delta') streamed += part.text
        if (part.type === 'reasoning-delta') reasoning += part.text
        if (part.type === 'error') throw part.error
      }
      expect(streamed, `turn ${turn}`).toMatch(/\S/)
      expect(reasoning, `turn ${turn}`).toMatch(/\S/)
      expect(await result.reasoningText).toBe(reasoning)
      expect(await result.text).toBe(streamed)
      expect(await result.finishReason).toBe('stop')
      answers.push(streamed)
      messages.push(...(await result.response).messages)
      responseId = (await result.providerMetadata)?.openai?.responseId as string
      expect(responseId).toMatch(/^resp_/)
    }
    await expectWholeConversation(bodies, messages, responseId, userTexts, answers)
  })
})

describe('the official openai SDK with stored responses', () => {
  it('chains 5 turns by previous_response_id (stream: false and stream: true) and lists the growing context', async () => {
    const ids: string[] = []
    const inputs: string[] = []
    const outputs: string[] = []
    for (let turn = 1; turn <= TURNS; turn++) {
      const input = `Turn ${turn}: name a colour.`
      inputs.push(input)
      const previous_response_id = ids.at(-1)
      let response: OpenAI.Responses.Response
      if (turn % 2 === 0) {
        const stream = await client.responses.create({ model: MODEL, input, previous_response_id, stream: true })
        let text = ''
        let completed: OpenAI.Responses.Response | null = null
        for await (const event of stream) {
          if (event.type === 'response.output_text.delta') text += event.delta
          if (event.type === 'response.completed') completed = event.response
        }
        expect(completed, `turn ${turn}`).not.toBeNull()
        response = completed as OpenAI.Responses.Response
        const message = response.output.find((item) => item.type === 'message')
        expect(message && textOf(message)).toBe(text)
        outputs.push(text)
      } else {
        response = await client.responses.create({ model: MODEL, input, previous_response_id, stream: false })
        outputs.push(response.output_text)
      }
      expect(response.status, `turn ${turn}`).toBe('completed')
      expect(outputs.at(-1), `turn ${turn}`).toMatch(/\S/)
      expect(response.previous_response_id ?? null).toBe(previous_response_id ?? null)
      expect(response.id).toMatch(/^resp_/)
      expect(ids).not.toContain(response.id)
      ids.push(response.id)
    }
    // The backend was given the whole conversation on the last turn.
    expect(await lastUpstreamMessages()).toEqual(conversation(inputs, outputs))

    // The last response's input items: every turn's user message and the earlier turns' answers.
    const items = await inputItemsOf(ids.at(-1)!)
    const messages = items.filter((item) => item.type === 'message')
    expect(messages.filter((item) => item.role === 'user').map(textOf)).toEqual(inputs)
    expect(messages.filter((item) => item.role === 'assistant').map(textOf)).toEqual(outputs.slice(0, -1))
    // In conversation order: user, assistant, ..., user.
    expect(messages.map((item) => item.role)).toEqual([
      ...Array(TURNS - 1)
        .fill(['user', 'assistant'])
        .flat(),
      'user',
    ])
    // The context grew turn by turn.
    const counts = await Promise.all(ids.map(async (id) => (await inputItemsOf(id)).filter((item) => item.type === 'message').length))
    expect(counts).toEqual([1, 3, 5, 7, 9])
  })

  it('retrieves a stored response, deletes it, and then finds it nowhere', async () => {
    const created = await client.responses.create({ model: MODEL, input: 'What is 7 * 6?' })
    expect(created.output_text).toMatch(/\S/)

    const retrieved = await client.responses.retrieve(created.id)
    expect(retrieved.id).toBe(created.id)
    expect(retrieved.status).toBe('completed')
    expect(retrieved.output_text).toBe(created.output_text)

    const deleted = await client.responses.delete(created.id)
    // The SDK types delete as void but returns the parsed body when there is one.
    expect(deleted as unknown).toMatchObject({ id: created.id, deleted: true })

    await expect(client.responses.retrieve(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError)
    const continued = client.responses.create({ model: MODEL, input: 'And doubled?', previous_response_id: created.id })
    await expect(continued).rejects.toBeInstanceOf(OpenAI.BadRequestError)
    await expect(continued).rejects.toMatchObject({ status: 400, code: 'previous_response_not_found', param: 'previous_response_id' })
  })

  it("does not let a second key read, list, continue or delete the first key's response", async () => {
    const created = await client.responses.create({ model: MODEL, input: 'Pick a number.' })
    await expect(other.responses.retrieve(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError)
    await expect(other.responses.inputItems.list(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError)
    await expect(other.responses.delete(created.id)).rejects.toBeInstanceOf(OpenAI.NotFoundError)
    const continued = other.responses.create({ model: MODEL, input: 'Double it.', previous_response_id: created.id })
    await expect(continued).rejects.toMatchObject({ status: 400, code: 'previous_response_not_found' })
    // Still there for its own key.
    expect((await client.responses.retrieve(created.id)).id).toBe(created.id)
  })
})
