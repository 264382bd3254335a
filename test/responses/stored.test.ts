import { env } from 'cloudflare:workers'
import { beforeAll, describe, expect, it } from 'vitest'
import { randomSecret, seedKey } from '../support/keys.ts'
import { MODEL, callWorker, chatInit, fetchWithEnv, recordedRequests, resetEmulator } from '../support/worker.ts'

// Stored responses through the Worker: store, previous_response_id, item_reference, and
// GET / DELETE /v1/responses/{id} and its input_items, against the emulator.

interface Item {
  type: string
  id: string
  role?: string
  status: string
  content: { type: string; text: string }[]
}

interface ResponseBody {
  id: string
  object: string
  status: string
  store: boolean
  previous_response_id: string | null
  output: Item[]
}

interface ListBody {
  object: string
  data: Item[]
  first_id: string | null
  last_id: string | null
  has_more: boolean
}

interface Event {
  type: string
  response?: ResponseBody
}

function postResponses(body: Record<string, unknown>, secret?: string) {
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  if (secret) headers.authorization = `Bearer ${secret}`
  return callWorker('/v1/responses', { method: 'POST', headers, body: JSON.stringify({ model: MODEL, ...body }) })
}

function call(method: string, path: string, secret?: string) {
  return callWorker(path, secret ? { method, headers: { authorization: `Bearer ${secret}` } } : { method })
}

function responseEvents(text: string): Event[] {
  return text
    .split('\n\n')
    .filter((frame) => frame.startsWith('event: '))
    .map((frame) => JSON.parse(frame.split('\n')[1]?.slice('data: '.length) ?? '') as Event)
}

/** A finished response: the body of a stream: false answer, or the response in a stream's last event. */
async function respond(body: Record<string, unknown>, secret?: string): Promise<ResponseBody> {
  const response = await postResponses(body, secret)
  expect(response.status).toBe(200)
  if (body.stream === true) {
    const last = responseEvents(await response.text()).at(-1)
    expect(last?.type).toBe('response.completed')
    return last?.response as ResponseBody
  }
  return (await response.json()) as ResponseBody
}

async function lastUpstreamMessages(): Promise<{ role: string; content: unknown }[]> {
  const requests = await recordedRequests()
  const body = requests.filter((request) => request.path === '/v1/chat/completions').at(-1)?.body ?? {}
  return body.messages as { role: string; content: unknown }[]
}

function textOf(item: Item | undefined): string {
  return item?.content.map((part) => part.text).join('') ?? ''
}

function answerOf(response: ResponseBody): Item {
  const message = response.output.find((item) => item.type === 'message')
  if (!message) throw new Error('no message item')
  return message
}

function reasoningOf(response: ResponseBody): Item {
  const reasoning = response.output.find((item) => item.type === 'reasoning')
  if (!reasoning) throw new Error('no reasoning item')
  return reasoning
}

function contentText(content: unknown): string {
  return typeof content === 'string' ? content : JSON.stringify(content)
}

/** A well-formed id no response ever had, in a conversation of its own. */
function madeUpId(prefix = 'resp'): string {
  const hex = Array.from(crypto.getRandomValues(new Uint8Array(16)), (byte) => byte.toString(16).padStart(2, '0')).join('')
  return `${prefix}_${hex}`
}

/** A well-formed id no response ever had, in the same conversation as `id`. */
function siblingId(id: string, prefix = 'resp'): string {
  const conversation = /_([0-9a-f]{16})/.exec(id)?.[1] ?? ''
  return `${prefix}_${conversation}${'0'.repeat(16)}`
}

/** An answer with its status, its body and each id replaced, to compare answers about different ids. */
async function answerWithout(response: Response, ...ids: string[]): Promise<{ status: string; body: string }> {
  let body = await response.text()
  for (const id of ids) body = body.replaceAll(id, '<id>')
  return { status: String(response.status), body }
}

// Directives keep the answers short and give them reasoning.
const SHORT = '[emulator reasoning_tokens=4 content_tokens=3]'

describe('continuing a stored response with previous_response_id', () => {
  it.each([false, true])('sends the earlier user turn and answer upstream, never the earlier reasoning (stream: %s)', async (stream) => {
    const first = await respond({ input: `${SHORT} First question about apples`, stream })
    expect(first.store).toBe(true)
    const earlierAnswer = textOf(answerOf(first))
    const earlierReasoning = textOf(reasoningOf(first))
    expect(earlierAnswer).toMatch(/\S/)
    expect(earlierReasoning).toMatch(/\S/)

    await resetEmulator()
    const second = await respond({ input: `${SHORT} Second question about pears`, previous_response_id: first.id, stream })
    expect(second.previous_response_id).toBe(first.id)
    expect(second.store).toBe(true)
    expect(second.id).not.toBe(first.id)

    const messages = await lastUpstreamMessages()
    expect(messages.map((message) => message.role)).toEqual(['user', 'assistant', 'user'])
    expect(contentText(messages[0]?.content)).toContain('First question about apples')
    expect(contentText(messages[1]?.content)).toBe(earlierAnswer)
    expect(contentText(messages[2]?.content)).toContain('Second question about pears')
    expect(earlierAnswer).not.toContain(earlierReasoning)
    for (const message of messages) expect(contentText(message.content)).not.toContain(earlierReasoning)
  })

  it('carries every earlier turn along a chain of three', async () => {
    const first = await respond({ input: `${SHORT} Turn one` })
    const second = await respond({ input: `${SHORT} Turn two`, previous_response_id: first.id })
    await resetEmulator()
    const third = await respond({ input: `${SHORT} Turn three`, previous_response_id: second.id, stream: true })
    expect(third.previous_response_id).toBe(second.id)
    const messages = await lastUpstreamMessages()
    expect(messages.map((message) => message.role)).toEqual(['user', 'assistant', 'user', 'assistant', 'user'])
    expect(messages.map((message) => contentText(message.content))).toEqual([
      expect.stringContaining('Turn one'),
      textOf(answerOf(first)),
      expect.stringContaining('Turn two'),
      textOf(answerOf(second)),
      expect.stringContaining('Turn three'),
    ])
  })

  it('answers 400 previous_response_not_found for an id never stored', async () => {
    const id = madeUpId()
    const response = await postResponses({ input: 'Hi', previous_response_id: id })
    expect(response.status).toBe(400)
    expect(await response.json()).toEqual({
      error: {
        message: `Previous response with id '${id}' not found.`,
        type: 'invalid_request_error',
        param: 'previous_response_id',
        code: 'previous_response_not_found',
      },
    })
  })

  it.each(['resp_1', 'resp_nothex', siblingId(madeUpId())])('answers the same 400 for a previous_response_id %s', async (id) => {
    const response = await postResponses({ input: 'Hi', previous_response_id: id })
    expect(response.status).toBe(400)
    expect(await response.json()).toMatchObject({
      error: {
        message: `Previous response with id '${id}' not found.`,
        param: 'previous_response_id',
        code: 'previous_response_not_found',
      },
    })
  })
})

describe('item_reference inputs', () => {
  it('resolve to the stored items, as the AI SDK sends the earlier turns', async () => {
    const first = await respond({ input: [{ role: 'user', content: [{ type: 'input_text', text: `${SHORT} What is a plum?` }] }] })
    await resetEmulator()
    const second = await respond({
      input: [
        { role: 'user', content: [{ type: 'input_text', text: `${SHORT} What is a plum?` }] },
        { type: 'item_reference', id: reasoningOf(first).id },
        { type: 'item_reference', id: answerOf(first).id },
        { role: 'user', content: [{ type: 'input_text', text: `${SHORT} And a prune?` }] },
      ],
    })
    expect(second.status).toBe('completed')
    const messages = await lastUpstreamMessages()
    expect(messages.map((message) => message.role)).toEqual(['user', 'assistant', 'user'])
    expect(contentText(messages[0]?.content)).toContain('What is a plum?')
    expect(contentText(messages[1]?.content)).toBe(textOf(answerOf(first)))
    expect(contentText(messages[2]?.content)).toContain('And a prune?')
    const reasoning = textOf(reasoningOf(first))
    expect(textOf(answerOf(first))).not.toContain(reasoning)
    for (const message of messages) expect(contentText(message.content)).not.toContain(reasoning)

    // The referenced items are part of what the second response was given.
    const listed = (await (await call('GET', `/v1/responses/${second.id}/input_items?order=asc`)).json()) as ListBody
    expect(listed.data.map((item) => item.type)).toEqual(['message', 'reasoning', 'message', 'message'])
    expect(listed.data[1]?.id).toBe(reasoningOf(first).id)
    expect(listed.data[2]?.id).toBe(answerOf(first).id)
  })

  it('gives an item once when it is referenced twice or is already in the continued response, so input_items pages to the end', async () => {
    const first = await respond({ input: `${SHORT} What is a plum?` })
    const answerId = answerOf(first).id
    await resetEmulator()
    const second = await respond({
      previous_response_id: first.id,
      input: [
        { role: 'user', content: `${SHORT} a` },
        { type: 'item_reference', id: answerId },
        { role: 'user', content: `${SHORT} b` },
        { type: 'item_reference', id: answerId },
      ],
    })
    const messages = await lastUpstreamMessages()
    expect(messages.filter((message) => contentText(message.content) === textOf(answerOf(first)))).toHaveLength(1)
    const seen: string[] = []
    let after: string | null = null
    for (let page = 0; page < 10; page++) {
      const query: string = after === null ? '' : `&after=${after}`
      const listed = (await (await call('GET', `/v1/responses/${second.id}/input_items?order=asc&limit=2${query}`)).json()) as ListBody
      seen.push(...listed.data.map((item) => item.id))
      if (!listed.has_more) break
      after = listed.last_id
    }
    expect(new Set(seen).size).toBe(seen.length)
    expect(seen.filter((id) => id === answerId)).toHaveLength(1)
    expect(seen).toHaveLength(5)
  })

  it('answers 400 item_not_found naming the input index for an unknown item id', async () => {
    const first = await respond({ input: `${SHORT} Hi` })
    for (const id of [siblingId(answerOf(first).id, 'msg'), madeUpId('msg'), 'msg_1']) {
      const response = await postResponses({
        input: [
          { role: 'user', content: 'Hi' },
          { type: 'item_reference', id: answerOf(first).id },
          { type: 'item_reference', id },
          { role: 'user', content: 'Again' },
        ],
      })
      expect(response.status).toBe(400)
      expect(await response.json()).toEqual({
        error: { message: `Item with id '${id}' not found.`, type: 'invalid_request_error', param: 'input[2]', code: 'item_not_found' },
      })
    }
  })
})

describe("another API key's stored responses", () => {
  let other: string
  beforeAll(async () => {
    other = randomSecret()
    await seedKey(env.KEYS, other, { name: 'stored responses, other key' })
  })

  it('answer exactly as an id that never existed, for every route, revealing nothing', async () => {
    const mine = await respond({ input: `${SHORT} Mine only` })
    const item = answerOf(mine).id
    // A never-stored id in the same conversation and one in another, asked by the other key.
    for (const never of [siblingId(mine.id), madeUpId()]) {
      const neverItem = siblingId(never, 'msg')
      const pairs: [(id: string, itemId: string) => Promise<Response>, string][] = [
        [(id) => call('GET', `/v1/responses/${id}`, other), 'GET'],
        [(id) => call('GET', `/v1/responses/${id}/input_items`, other), 'input_items'],
        [(id) => call('DELETE', `/v1/responses/${id}`, other), 'DELETE'],
        [(id) => postResponses({ input: 'Hi', previous_response_id: id }, other), 'previous_response_id'],
        [
          (_id, itemId) =>
            postResponses(
              {
                input: [
                  { role: 'user', content: 'Hi' },
                  { type: 'item_reference', id: itemId },
                ],
              },
              other,
            ),
          'item_reference',
        ],
      ]
      for (const [ask, what] of pairs) {
        const foreign = await answerWithout(await ask(mine.id, item), mine.id, item)
        const absent = await answerWithout(await ask(never, neverItem), never, neverItem)
        expect({ what, ...foreign }).toEqual({ what, ...absent })
        expect(Number(foreign.status)).toBeGreaterThanOrEqual(400)
        expect(foreign.body).not.toContain('Mine only')
      }
    }
    // The other key's DELETE removed nothing: the owner still reads and continues it.
    expect(await (await call('GET', `/v1/responses/${mine.id}`)).json()).toEqual(mine)
    expect((await postResponses({ input: 'Hi', previous_response_id: mine.id })).status).toBe(200)
  })

  it("keeps the other key's own stored responses apart from the first key's", async () => {
    const theirs = await respond({ input: `${SHORT} Theirs` }, other)
    expect(await (await call('GET', `/v1/responses/${theirs.id}`, other)).json()).toEqual(theirs)
    expect((await call('GET', `/v1/responses/${theirs.id}`)).status).toBe(404)
  })
})

describe('store', () => {
  it('store: false stores nothing and answers store: false', async () => {
    const response = await respond({ input: `${SHORT} Forget me`, store: false })
    expect(response.store).toBe(false)
    const read = await call('GET', `/v1/responses/${response.id}`)
    expect(read.status).toBe(404)
    expect(await read.json()).toMatchObject({ error: { code: 'response_not_found' } })
    const continued = await postResponses({ input: 'Hi', previous_response_id: response.id })
    expect(continued.status).toBe(400)
    expect(await continued.json()).toMatchObject({ error: { code: 'previous_response_not_found' } })
  })

  it.each([false, true])('store: false stores nothing on a stream either (stream: %s)', async (stream) => {
    const response = await respond({ input: `${SHORT} Forget me`, store: false, stream })
    expect(response.store).toBe(false)
    expect((await call('GET', `/v1/responses/${response.id}`)).status).toBe(404)
  })

  it('stores a response whose request leaves store out, as OpenAI does by default', async () => {
    const response = await respond({ input: `${SHORT} Keep me` })
    expect(response.store).toBe(true)
    expect((await call('GET', `/v1/responses/${response.id}`)).status).toBe(200)
  })
})

describe('GET /v1/responses/{id}', () => {
  it('returns the object a stream: false client got', async () => {
    const response = await respond({ input: `${SHORT} Hello`, metadata: { a: 'b' }, temperature: 0.3 })
    const read = await call('GET', `/v1/responses/${response.id}`)
    expect(read.status).toBe(200)
    expect(await read.json()).toEqual(response)
  })

  it('returns the response of the stream: true response.completed event', async () => {
    const response = await respond({ input: `${SHORT} Hello`, stream: true })
    expect(response.status).toBe('completed')
    expect(await (await call('GET', `/v1/responses/${response.id}`)).json()).toEqual(response)
  })

  it('returns an incomplete response as it ended', async () => {
    const response = (await (await postResponses({ input: 'Tell a long story.', max_output_tokens: 3 })).json()) as ResponseBody
    expect(response.status).toBe('incomplete')
    expect(await (await call('GET', `/v1/responses/${response.id}`)).json()).toEqual(response)
  })
})

describe('a turn sent the moment a stream ends', () => {
  it('finds the response named in response.completed, before the stream has even closed', async () => {
    const response = await postResponses({ input: `${SHORT} Quick`, stream: true })
    const reader = (response.body as ReadableStream<Uint8Array>).pipeThrough(new TextDecoderStream()).getReader()
    let text = ''
    let completed: ResponseBody | undefined
    while (!completed) {
      const { value, done } = await reader.read()
      if (done) break
      text += value
      const frame = text.split('\n\n').find((candidate) => candidate.startsWith('event: response.completed\n'))
      if (frame && text.includes(`${frame}\n\n`)) completed = responseEvents(`${frame}\n\n`)[0]?.response
    }
    expect(completed?.id).toMatch(/^resp_/)
    const id = completed?.id ?? ''
    const [read, continued] = await Promise.all([
      call('GET', `/v1/responses/${id}`),
      postResponses({ input: `${SHORT} Next`, previous_response_id: id }),
    ])
    expect(read.status).toBe(200)
    expect(continued.status).toBe(200)
    expect(((await continued.json()) as ResponseBody).previous_response_id).toBe(id)
    expect(await read.json()).toEqual(completed)
    await reader.cancel()
  })
})

describe('DELETE /v1/responses/{id}', () => {
  it('answers the deletion object, then the response is gone everywhere', async () => {
    const response = await respond({ input: `${SHORT} Delete me` })
    const deleted = await call('DELETE', `/v1/responses/${response.id}`)
    expect(deleted.status).toBe(200)
    expect(await deleted.json()).toEqual({ id: response.id, object: 'response', deleted: true })

    const read = await call('GET', `/v1/responses/${response.id}`)
    expect(read.status).toBe(404)
    expect(await read.json()).toMatchObject({
      error: { message: `Response with id '${response.id}' not found.`, param: 'response_id', code: 'response_not_found' },
    })
    expect((await call('GET', `/v1/responses/${response.id}/input_items`)).status).toBe(404)
    const continued = await postResponses({ input: 'Hi', previous_response_id: response.id })
    expect(continued.status).toBe(400)
    expect(await continued.json()).toMatchObject({ error: { code: 'previous_response_not_found' } })
    const again = await call('DELETE', `/v1/responses/${response.id}`)
    expect(again.status).toBe(404)
    expect(await again.json()).toMatchObject({ error: { code: 'response_not_found', param: 'response_id' } })
  })

  it('leaves the next response of a chain continuable with the full context when the first is deleted', async () => {
    const first = await respond({ input: `${SHORT} Chain start` })
    const second = await respond({ input: `${SHORT} Chain middle`, previous_response_id: first.id })
    expect((await call('DELETE', `/v1/responses/${first.id}`)).status).toBe(200)

    // The items the second holds of the first are kept: its input_items and its continuation.
    const listed = (await (await call('GET', `/v1/responses/${second.id}/input_items?order=asc`)).json()) as ListBody
    expect(listed.data.map((item) => item.id)).toEqual([
      expect.stringMatching(/^msg_/),
      reasoningOf(first).id,
      answerOf(first).id,
      expect.stringMatching(/^msg_/),
    ])

    await resetEmulator()
    expect((await postResponses({ input: `${SHORT} Chain end`, previous_response_id: second.id })).status).toBe(200)
    const messages = await lastUpstreamMessages()
    expect(messages.map((message) => contentText(message.content))).toEqual([
      expect.stringContaining('Chain start'),
      textOf(answerOf(first)),
      expect.stringContaining('Chain middle'),
      textOf(answerOf(second)),
      expect.stringContaining('Chain end'),
    ])
    // The first's own items are still referable while the second holds them.
    const referenced = await postResponses({
      input: [
        { role: 'user', content: 'Hi' },
        { type: 'item_reference', id: answerOf(first).id },
        { role: 'user', content: 'Again' },
      ],
    })
    expect(referenced.status).toBe(200)
  })

  it('removes the items only the deleted response held', async () => {
    const first = await respond({ input: `${SHORT} Alone` })
    expect((await call('DELETE', `/v1/responses/${first.id}`)).status).toBe(200)
    const referenced = await postResponses({
      input: [
        { role: 'user', content: 'Hi' },
        { type: 'item_reference', id: answerOf(first).id },
      ],
    })
    expect(referenced.status).toBe(400)
    expect(await referenced.json()).toMatchObject({ error: { code: 'item_not_found', param: 'input[1]' } })
  })
})

describe('GET /v1/responses/{id}/input_items', () => {
  it('lists the input, newest first by default, as a list object', async () => {
    const response = await respond({
      input: [
        { role: 'user', content: `${SHORT} one` },
        { role: 'assistant', content: 'two' },
        { role: 'user', content: 'three' },
      ],
    })
    const listed = await call('GET', `/v1/responses/${response.id}/input_items`)
    expect(listed.status).toBe(200)
    const body = (await listed.json()) as ListBody
    expect(body.object).toBe('list')
    expect(body.data.map(textOf)).toEqual(['three', 'two', `${SHORT} one`])
    expect(body.data.map((item) => item.role)).toEqual(['user', 'assistant', 'user'])
    expect(body.data[0]?.content[0]?.type).toBe('input_text')
    expect(body.data[1]?.content[0]?.type).toBe('output_text')
    expect(body.first_id).toBe(body.data[0]?.id)
    expect(body.last_id).toBe(body.data[2]?.id)
    expect(body.has_more).toBe(false)
    const asc = (await (await call('GET', `/v1/responses/${response.id}/input_items?order=asc`)).json()) as ListBody
    expect(asc.data).toEqual([...body.data].reverse())
    expect(asc.first_id).toBe(body.last_id)
  })

  it('pages with limit and after, in either order', async () => {
    const texts = ['a', 'b', 'c', 'd', 'e'].map((letter) => `${SHORT} ${letter}`)
    const response = await respond({ input: texts.map((text) => ({ role: 'user', content: text })) })
    const page = async (query: string) => {
      const answer = await call('GET', `/v1/responses/${response.id}/input_items?${query}`)
      expect(answer.status).toBe(200)
      return (await answer.json()) as ListBody
    }
    const firstPage = await page('order=asc&limit=2')
    expect(firstPage.data.map(textOf)).toEqual(texts.slice(0, 2))
    expect(firstPage.has_more).toBe(true)
    expect(firstPage.first_id).toBe(firstPage.data[0]?.id)
    expect(firstPage.last_id).toBe(firstPage.data[1]?.id)
    const secondPage = await page(`order=asc&limit=2&after=${firstPage.last_id}`)
    expect(secondPage.data.map(textOf)).toEqual(texts.slice(2, 4))
    expect(secondPage.has_more).toBe(true)
    const lastPage = await page(`order=asc&limit=2&after=${secondPage.last_id}`)
    expect(lastPage.data.map(textOf)).toEqual(texts.slice(4))
    expect(lastPage.has_more).toBe(false)
    expect(lastPage.first_id).toBe(lastPage.last_id)

    const desc = await page('limit=3')
    expect(desc.data.map(textOf)).toEqual([...texts].reverse().slice(0, 3))
    expect(desc.has_more).toBe(true)
    const descRest = await page(`limit=3&after=${desc.last_id}`)
    expect(descRest.data.map(textOf)).toEqual([...texts].reverse().slice(3))
    expect(descRest.has_more).toBe(false)

    const exact = await page('limit=5')
    expect(exact.data).toHaveLength(5)
    expect(exact.has_more).toBe(false)
    const end = await page(`after=${exact.last_id}`)
    expect(end).toEqual({ object: 'list', data: [], first_id: null, last_id: null, has_more: false })
    expect((await page('include[]=message.input_image.image_url&limit=100')).data).toHaveLength(5)
  })

  it.each([
    ['limit=0', 'limit'],
    ['limit=101', 'limit'],
    ['limit=x', 'limit'],
    ['limit=2.5', 'limit'],
    ['order=up', 'order'],
  ])('refuses %s with 400 invalid_value', async (query, param) => {
    const response = await respond({ input: `${SHORT} Hi` })
    const listed = await call('GET', `/v1/responses/${response.id}/input_items?${query}`)
    expect(listed.status).toBe(400)
    expect(await listed.json()).toMatchObject({ error: { param, code: 'invalid_value', type: 'invalid_request_error' } })
  })

  it('refuses an unknown query parameter with 400 unknown_parameter, on every stored-response route', async () => {
    const response = await respond({ input: `${SHORT} Hi` })
    for (const [method, path] of [
      ['GET', `/v1/responses/${response.id}/input_items?before=x`],
      ['GET', `/v1/responses/${response.id}?stream=true`],
      ['DELETE', `/v1/responses/${response.id}?force=1`],
    ] as const) {
      const answer = await call(method, path)
      expect(answer.status).toBe(400)
      expect(await answer.json()).toMatchObject({ error: { code: 'unknown_parameter' } })
    }
    // The refused DELETE deleted nothing.
    expect((await call('GET', `/v1/responses/${response.id}`)).status).toBe(200)
  })

  it('answers 400 for an after that is not one of the items', async () => {
    const response = await respond({ input: `${SHORT} Hi` })
    const listed = await call('GET', `/v1/responses/${response.id}/input_items?after=msg_nope`)
    expect(listed.status).toBe(400)
    expect(await listed.json()).toMatchObject({ error: { param: 'after' } })
  })

  it("lists, for a continued response, the earlier turns' items and then its own input", async () => {
    const first = await respond({ input: `${SHORT} Earlier` })
    const second = await respond({ input: `${SHORT} Later`, previous_response_id: first.id })
    const listed = (await (await call('GET', `/v1/responses/${second.id}/input_items?order=asc`)).json()) as ListBody
    expect(listed.data.map((item) => [item.type, item.role ?? null])).toEqual([
      ['message', 'user'],
      ...first.output.map((item) => [item.type, item.role ?? null]),
      ['message', 'user'],
    ])
    expect(textOf(listed.data[0])).toContain('Earlier')
    expect(listed.data.slice(1, -1)).toEqual(first.output)
    expect(textOf(listed.data.at(-1))).toContain('Later')
    const firstListed = (await (await call('GET', `/v1/responses/${first.id}/input_items`)).json()) as ListBody
    expect(firstListed.data).toEqual([listed.data[0]])
  })
})

describe('stored-response routes', () => {
  it('answer 405 to a method they do not take', async () => {
    const response = await respond({ input: `${SHORT} Hi` })
    const posted = await callWorker(`/v1/responses/${response.id}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    })
    expect(posted.status).toBe(405)
    expect(posted.headers.get('allow')).toMatch(/GET/)
    expect((await call('DELETE', `/v1/responses/${response.id}/input_items`)).status).toBe(405)
    expect((await call('PUT', `/v1/responses/${response.id}`)).status).toBe(405)
    // None of them touched it.
    expect((await call('GET', `/v1/responses/${response.id}`)).status).toBe(200)
  })

  it.each(['resp_nothex', 'resp_', 'msg_0123456789abcdef0123456789abcdef', `resp_${'A'.repeat(32)}`])(
    'answer 404 response_not_found for an id not of the stored form (%s)',
    async (id) => {
      for (const [method, path] of [
        ['GET', `/v1/responses/${id}`],
        ['DELETE', `/v1/responses/${id}`],
        ['GET', `/v1/responses/${id}/input_items`],
      ] as const) {
        const answer = await call(method, path)
        expect(answer.status).toBe(404)
        expect(await answer.json()).toMatchObject({
          error: { message: `Response with id '${id}' not found.`, code: 'response_not_found', param: 'response_id' },
        })
      }
    },
  )

  it('need a key', async () => {
    const response = await respond({ input: `${SHORT} Hi` })
    const answer = await callWorker(`/v1/responses/${response.id}`, { headers: { authorization: 'Bearer sk-nope' } })
    expect(answer.status).toBe(401)
    expect(await answer.text()).not.toContain(response.id)
  })
})

describe('a deployment that stores nothing (RESPONSE_RETENTION_DAYS = 0)', () => {
  it('answers store: false to a request that leaves store out, and keeps nothing', async () => {
    for (const stream of [false, true]) {
      const answer = await fetchWithEnv({ RESPONSE_RETENTION_DAYS: '0' }, '/v1/responses', chatInit({ input: `${SHORT} Hi`, stream }))
      expect(answer.status).toBe(200)
      const response = stream
        ? (responseEvents(await answer.text()).at(-1)?.response as ResponseBody)
        : ((await answer.json()) as ResponseBody)
      expect(response.store).toBe(false)
      expect((await call('GET', `/v1/responses/${response.id}`)).status).toBe(404)
      expect(
        (await fetchWithEnv({ RESPONSE_RETENTION_DAYS: '0' }, `/v1/responses/${response.id}`, { headers: chatInit({}).headers })).status,
      ).toBe(404)
    }
  })
})
