// Keys, tokens, prompts and completions never reach a log line, on any path, errors included.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { TEST_SECRET, randomSecret } from '../support/keys.ts'
import { callWorker, chatBody, chatInit, fetchWithEnv, postChat } from '../support/worker.ts'
import { dataEvents, frames } from '../support/sse.ts'

const PROMPT = 'PROMPT-MARKER-7f3a: my bank password is hunter2'
const UNKNOWN_KEY = `sk-${'Z'.repeat(40)}Sec`
const BACKEND_KEY = 'test-backend-key'
const ACCESS_PAIR = { ACCESS_CLIENT_ID: 'access-id-4b1e.access', ACCESS_CLIENT_SECRET: 'access-secret-c9d2e7' }
const METHODS = ['log', 'info', 'warn', 'error', 'debug'] as const

interface StoredAnswer {
  id: string
  output: { content: { text: string }[] }[]
}

function responsesInit(body: unknown): RequestInit {
  return { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }
}

let logged: string[] = []
beforeEach(() => {
  logged = []
  for (const method of METHODS) {
    vi.spyOn(console, method).mockImplementation((...args: unknown[]) => {
      logged.push(args.map((arg) => (typeof arg === 'string' ? arg : (JSON.stringify(arg) ?? String(arg)))).join(' '))
    })
  }
})
afterEach(() => {
  vi.restoreAllMocks()
})

describe('logs', () => {
  it('never contain keys, tokens, prompts or completions, whatever happens to a request', async () => {
    const streamed = await (await postChat(chatBody(PROMPT, { stream: true }))).text()
    const completion = (dataEvents(frames(streamed)) as { choices: { delta: { content?: string } }[] }[])
      .map((chunk) => chunk.choices[0]?.delta.content ?? '')
      .join('')
    expect(completion.length).toBeGreaterThan(10)

    await (await postChat(chatBody(PROMPT))).text()
    await (await postChat(chatBody(`${PROMPT} [emulator fault=refuse:500]`, { stream: true }))).text()
    await (await postChat(chatBody(`${PROMPT} [emulator fault=die_after:2]`, { stream: true }))).text()
    await (await postChat(chatBody(`${PROMPT} [emulator fault=malformed_after:1]`, { stream: true }))).text()
    await (await postChat(chatBody(PROMPT), { headers: { authorization: `Bearer ${UNKNOWN_KEY}` } })).text()
    await (
      await callWorker('/v1/chat/completions', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: `{"messages": "${PROMPT}`,
      })
    ).text()
    const minted = (await (await callWorker('/v1/stream-tokens', { method: 'POST' })).json()) as { token: string }
    await (await callWorker(`/v1/chat/completions?token=${minted.token}`, { method: 'POST', headers: { authorization: '' } })).text()
    await (await fetchWithEnv({ BACKEND_API_KEY: 'wrong-backend-key' }, '/v1/chat/completions', chatInit(chatBody(PROMPT)))).text()
    // The Cloudflare Access token on a good request, a failing one, and half a pair (the deployment's fault).
    const answers = [
      await fetchWithEnv(ACCESS_PAIR, '/v1/chat/completions', chatInit(chatBody(PROMPT))),
      await fetchWithEnv(ACCESS_PAIR, '/v1/chat/completions', chatInit(chatBody(`${PROMPT} [emulator fault=refuse:500]`))),
      await fetchWithEnv({ ACCESS_CLIENT_ID: ACCESS_PAIR.ACCESS_CLIENT_ID }, '/v1/chat/completions', chatInit(chatBody(PROMPT))),
    ]
    const accessBodies = await Promise.all(answers.map((answer) => answer.text()))
    expect(answers.map((answer) => answer.status)).toEqual([200, 500, 502])
    for (const value of Object.values(ACCESS_PAIR)) {
      expect(accessBodies.join('\n')).not.toContain(value)
      for (const answer of answers) expect([...answer.headers.values()].join('\n')).not.toContain(value)
    }
    // An unexpected failure inside the Worker (the KV binding is missing) is logged: by class only.
    // A key never seen before misses the isolate cache, so KV is really read.
    const freshKey = randomSecret()
    const brokenInit = {
      ...chatInit(chatBody(PROMPT)),
      headers: { 'content-type': 'application/json', authorization: `Bearer ${freshKey}` },
    }
    const broken = await fetchWithEnv({ KEYS: undefined as unknown as string }, '/v1/chat/completions', brokenInit)
    expect(broken.status).toBe(500)

    // Stored responses: stored, continued, listed, and a store that fails as a response is written
    // (logged by its event, never the response it held).
    const stored = (await (await callWorker('/v1/responses', responsesInit({ input: PROMPT }))).json()) as StoredAnswer
    const storedText = stored.output.flatMap((item) => item.content.map((part) => part.text)).join('')
    expect(storedText.length).toBeGreaterThan(10)
    await (await callWorker('/v1/responses', responsesInit({ input: PROMPT, previous_response_id: stored.id, stream: true }))).text()
    await (await callWorker(`/v1/responses/${stored.id}/input_items`)).text()
    const failingStore = {
      idFromName: () => {
        throw new Error(`store down ${PROMPT}`)
      },
    }
    const unstored = await fetchWithEnv({ RESPONSES: failingStore }, '/v1/responses', chatInit({ input: PROMPT }))
    expect(unstored.status).toBe(200)
    await unstored.text()
    expect(logged.join('\n')).toContain('response_store_failed')

    expect(logged.length).toBeGreaterThan(0)
    const everything = logged.join('\n')
    for (const secret of [
      TEST_SECRET,
      UNKNOWN_KEY,
      freshKey,
      BACKEND_KEY,
      'wrong-backend-key',
      ...Object.values(ACCESS_PAIR),
      minted.token,
      'PROMPT-MARKER-7f3a',
      'hunter2',
      completion,
      storedText,
    ]) {
      expect(everything).not.toContain(secret)
    }
  })
})
