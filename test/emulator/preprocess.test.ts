// --preprocess-ms-per-token: vLLM v0.11.0 renders the chat template (on its event loop) and
// tokenizes the prompt (off it) before it sends the response headers (gpu-backend/emulator/preprocess.ts).
// Delays are small; bounds are generous or orderings.
import { describe, expect, it } from 'vitest'
import { CHAT_RENDER_SHARE } from '../../gpu-backend/emulator/preprocess.ts'
import { countChatPromptTokens, encodeCompletionPrompt } from '../../gpu-backend/emulator/tokenizer.ts'
import { eventually, emulatorFor, MODEL, post, sleep } from './helpers.ts'

const FILLER = ['alpha', 'beta', 'gamma', 'delta']

/** A one-message chat body of about `words` prompt tokens (each filler word is one token). */
function chatOf(words: number, extra: Record<string, unknown> = {}) {
  const content = `Read: ${Array.from({ length: words }, (_, i) => FILLER[i % FILLER.length]).join(' ')}`
  return { model: MODEL, max_tokens: 4, messages: [{ role: 'user', content }], ...extra }
}

function tokensOf(body: { messages: { role: string; content: string }[] }): number {
  return countChatPromptTokens(body.messages)
}

/** Posts and resolves with the time its headers arrived (ms of performance.now()) and the response. */
async function timed(promise: Promise<Response>): Promise<{ at: number; response: Response }> {
  const response = await promise
  return { at: performance.now(), response }
}

describe('preprocessing before the headers (preprocessMsPerToken)', () => {
  it("delays a stream's headers by prompt tokens x preprocessMsPerToken, and not at all once patched to 0", async () => {
    const emulator = await emulatorFor({ preprocessMsPerToken: 1 })
    const body = chatOf(240, { stream: true, stream_options: { include_usage: true } })
    const tokens = tokensOf(body)
    const sentAt = performance.now()
    const { at, response } = await timed(post(emulator, '/v1/chat/completions', body))
    expect(response.status).toBe(200)
    expect(at - sentAt).toBeGreaterThanOrEqual(tokens - 2)
    expect(at - sentAt).toBeLessThan(tokens + 2000)
    expect(await response.text()).toContain(`"prompt_tokens":${tokens},`)

    const patched = await post(emulator, '/emulator/config', { preprocessMsPerToken: 0 })
    expect(((await patched.json()) as { preprocessMsPerToken: number }).preprocessMsPerToken).toBe(0)
    const again = performance.now()
    const fast = await timed(post(emulator, '/v1/chat/completions', body))
    expect(fast.response.status).toBe(200)
    expect(fast.at - again).toBeLessThan(tokens)
    await fast.response.text()
  })

  it('tokenizes off the loop: a small request sent after a big one gets its headers first', async () => {
    const emulator = await emulatorFor({ preprocessMsPerToken: 0.5 })
    const big = chatOf(600, { stream: true })
    const order: string[] = []
    const bigDone = post(emulator, '/v1/chat/completions', big).then(async (r) => {
      order.push('big')
      await r.text()
    })
    // The big one is being preprocessed once it is in the request log.
    await eventually(
      async () => (await (await fetch(`${emulator.url}/emulator/requests`)).json()) as unknown[],
      (entries) => entries.length === 1,
    )
    const small = await post(emulator, '/v1/chat/completions', chatOf(4, { stream: true }))
    order.push('small')
    await small.text()
    await bigDone
    expect(order).toEqual(['small', 'big'])
  })

  it("holds the whole server for the chat template's render: /health waits for it", async () => {
    const msPerToken = 2
    const emulator = await emulatorFor({ preprocessMsPerToken: msPerToken })
    const big = chatOf(1000, { stream: true })
    const renderMs = tokensOf(big) * msPerToken * CHAT_RENDER_SHARE // about 100 ms of the 2 s
    const abort = new AbortController()
    const sentAt = performance.now()
    const bigDone = post(emulator, '/v1/chat/completions', big, { signal: abort.signal }).then(
      () => 'headers',
      () => 'aborted',
    )
    await eventually(
      async () => (await (await fetch(`${emulator.url}/emulator/requests`)).json()) as unknown[],
      (entries) => entries.length === 1,
    )
    const health = await timed(fetch(`${emulator.url}/health`))
    expect(health.response.status).toBe(200)
    // The render began after the big request arrived; /health, sent during it, waited for its end.
    expect(health.at - sentAt).toBeGreaterThanOrEqual(renderMs - 2)
    expect(health.at - sentAt).toBeLessThan(tokensOf(big) * msPerToken) // long before the big one's headers
    abort.abort()
    expect(await bigDone).toBe('aborted')
  })

  it('never starts a generation whose client left during the preprocessing', async () => {
    const emulator = await emulatorFor({ preprocessMsPerToken: 1 })
    const body = chatOf(200, { stream: true })
    const abort = new AbortController()
    const left = post(emulator, '/v1/chat/completions', body, { signal: abort.signal }).catch(() => 'aborted')
    await eventually(
      async () => (await (await fetch(`${emulator.url}/emulator/requests`)).json()) as unknown[],
      (entries) => entries.length === 1,
    )
    abort.abort()
    expect(await left).toBe('aborted')
    await sleep(tokensOf(body) + 50) // past the end of its preprocessing
    expect(emulator.stats()).toMatchObject({ requests: 1, streamsStarted: 0, inFlight: 0, completed: 0 })
    expect(emulator.load()).toMatchObject({ running: 0, waiting: 0, prefixQueryTokens: 0 })
  })

  it('sends a context-length refusal after the preprocessing, an unknown model at once', async () => {
    const emulator = await emulatorFor({ preprocessMsPerToken: 1, maxModelLen: 200 })
    const body = chatOf(260)
    const order: string[] = []
    const sentAt = performance.now()
    const tooLong = timed(post(emulator, '/v1/chat/completions', body)).then((r) => (order.push('context'), r))
    const unknown = timed(post(emulator, '/v1/chat/completions', { ...body, model: 'other' })).then((r) => (order.push('model'), r))
    const [refused, notFound] = await Promise.all([tooLong, unknown])
    expect(refused.response.status).toBe(400)
    expect(((await refused.response.json()) as { error: { message: string } }).error.message).toMatch(
      /maximum context length is 200 tokens/,
    )
    expect(refused.at - sentAt).toBeGreaterThanOrEqual(tokensOf(body) - 2)
    expect(notFound.response.status).toBe(404)
    expect(order).toEqual(['model', 'context'])
  })

  it('makes a completion text prompt and /tokenize wait for their tokens, a token-id prompt not', async () => {
    const emulator = await emulatorFor({ preprocessMsPerToken: 1 })
    const text = Array.from({ length: 250 }, (_, i) => FILLER[i % FILLER.length]).join(' ')
    const ids = encodeCompletionPrompt(text)
    const order: string[] = []
    const sentAt = performance.now()
    const [textAnswer, idsAnswer, tokenized] = await Promise.all([
      timed(post(emulator, '/v1/completions', { model: MODEL, prompt: text, max_tokens: 2 })).then((r) => (order.push('text'), r)),
      timed(post(emulator, '/v1/completions', { model: MODEL, prompt: ids, max_tokens: 2 })).then((r) => (order.push('ids'), r)),
      timed(post(emulator, '/tokenize', { model: MODEL, prompt: text })),
    ])
    expect([textAnswer.response.status, idsAnswer.response.status, tokenized.response.status]).toEqual([200, 200, 200])
    expect(order[0]).toBe('ids')
    expect(textAnswer.at - sentAt).toBeGreaterThanOrEqual(ids.length - 2)
    expect(tokenized.at - sentAt).toBeGreaterThanOrEqual(ids.length - 2)
    expect(((await tokenized.response.json()) as { count: number }).count).toBe(ids.length)
  })
})
