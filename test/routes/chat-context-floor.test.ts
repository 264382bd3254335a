// A request that certainly cannot fit the context is refused at the edge, in vLLM's own
// context-length 400 shape, without a backend call or a rate-limit admission; one that might fit
// still goes to the backend, which counts exactly. "Certainly" is the prompt-token floor
// (src/schema/prompt-floor.ts): the template's tokens per turn and what the text certainly adds.
import { afterAll, describe, expect, it } from 'vitest'
import { promptTokenFloor } from '../../src/schema/prompt-floor.ts'
import { keyWithLimits, limiterState } from '../support/limits.ts'
import { endSessions, postStream } from '../streams/helpers.ts'
import { callWorker, emulatorStats, MODEL, postChat, recordedRequests } from '../support/worker.ts'

const MAX_MODEL_LEN = 4096
const FAST = '[emulator ttft_ms=1 itl_ms=0 reasoning_tokens=1 content_tokens=1]'

interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null }
}
type Message = { role: 'user' | 'assistant'; content: string }

let serial = 0
const newMarker = () => `floor-${Date.now().toString(36)}-${serial++}`

/**
 * `count` alternating turns, user first and last when odd, so no prompt rule merges them. The first
 * carries a marker (to find the request in the emulator's log), the emulator's timing and `pad`.
 */
function turns(count: number, marker = newMarker(), pad = ''): { marker: string; messages: Message[] } {
  const messages = Array.from({ length: count }, (_, i): Message =>
    i % 2 === 0 ? { role: 'user', content: 'x' } : { role: 'assistant', content: '' },
  )
  messages[0] = { role: 'user', content: `${FAST} ${marker}${pad}` }
  return { marker, messages }
}

async function sentWith(marker: string): Promise<number> {
  return (await recordedRequests()).filter((entry) => entry.path.startsWith('/v1/') && JSON.stringify(entry.body).includes(marker)).length
}

/** Turns whose floor is `floor`: the marked first turn, two tokens per further turn, and one word more when odd. */
function turnsWithFloor(floor: number): { marker: string; messages: Message[] } {
  const marker = newMarker()
  const extra = floor - promptTokenFloor(turns(1, marker).messages)
  const result = turns(1 + Math.floor(extra / 2), marker, extra % 2 === 1 ? ' z' : '')
  expect(promptTokenFloor(result.messages)).toBe(floor)
  return result
}

afterAll(() => endSessions())

describe('the gateway refuses a request that certainly does not fit', () => {
  it('refuses 10,000 messages with the context-length 400, before any backend call', async () => {
    const { marker, messages } = turns(10_000)
    const before = await emulatorStats()
    const response = await postChat({ model: MODEL, messages, stream: true })
    expect(response.status).toBe(400)
    const body = (await response.json()) as ErrorBody
    expect(body.error).toMatchObject({ type: 'invalid_request_error', param: 'messages', code: 'context_length_exceeded' })
    expect(body.error.message).toMatch(
      /^This model's maximum context length is 4096 tokens\. However, your request has at least \d+ input tokens\. Please reduce the length of the input messages\.$/,
    )
    expect((await emulatorStats()).requests).toBe(before.requests)
    expect(await sentWith(marker)).toBe(0)
  })

  it('counts the prompt the gateway sends: 10,000 user messages merged into one turn are still 10,000 words', async () => {
    const marker = `floor-merged-${serial++}`
    const messages = Array.from({ length: 10_000 }, (_, i) => ({ role: 'user', content: i === 0 ? `${FAST} ${marker}` : 'a' }))
    const response = await postChat({ model: MODEL, messages })
    expect(response.status).toBe(400)
    expect(((await response.json()) as ErrorBody).error.code).toBe('context_length_exceeded')
    expect(await sentWith(marker)).toBe(0)
  })

  it('refuses at exactly the context length and sends the request one token under it to the backend', async () => {
    const over = turnsWithFloor(MAX_MODEL_LEN)
    const refused = await postChat({ model: MODEL, messages: over.messages })
    expect(refused.status).toBe(400)
    expect(((await refused.json()) as ErrorBody).error.message).toContain(`at least ${MAX_MODEL_LEN} input tokens`)
    expect(await sentWith(over.marker)).toBe(0)

    // The floor is one under the context: the prompt might fit, so the backend decides (here its
    // exact count, a little higher for the marked turn, is over: its own 400, passed on).
    const under = turnsWithFloor(MAX_MODEL_LEN - 1)
    const passed = await postChat({ model: MODEL, messages: under.messages })
    await passed.text()
    expect(await sentWith(under.marker)).toBe(1)
  })

  it('sends a prompt that fits to the backend, which admits it and counts at least the floor', async () => {
    const { marker, messages } = turnsWithFloor(MAX_MODEL_LEN - 64)
    const response = await postChat({ model: MODEL, messages })
    expect(response.status).toBe(200)
    const body = (await response.json()) as { usage: { prompt_tokens: number } }
    expect(body.usage.prompt_tokens).toBeGreaterThanOrEqual(MAX_MODEL_LEN - 64)
    expect(body.usage.prompt_tokens).toBeLessThan(MAX_MODEL_LEN)
    expect(await sentWith(marker)).toBe(1)
  })

  it("refuses the client's max_tokens that certainly leaves no room, and sends the one that might", async () => {
    const floor = 2000
    const tooLarge = turnsWithFloor(floor)
    const response = await postChat({ model: MODEL, messages: tooLarge.messages, max_tokens: MAX_MODEL_LEN - floor + 1 })
    expect(response.status).toBe(400)
    const body = (await response.json()) as ErrorBody
    expect(body.error).toMatchObject({ param: 'max_tokens', code: 'context_length_exceeded' })
    expect(body.error.message).toBe(
      `'max_tokens' or 'max_completion_tokens' is too large: ${MAX_MODEL_LEN - floor + 1}. This model's maximum context length is ` +
        `${MAX_MODEL_LEN} tokens and your request has at least ${floor} input tokens (${MAX_MODEL_LEN - floor + 1} > ${MAX_MODEL_LEN} - ${floor}).`,
    )
    expect(await sentWith(tooLarge.marker)).toBe(0)

    const mightFit = turnsWithFloor(floor)
    await (await postChat({ model: MODEL, messages: mightFit.messages, max_tokens: MAX_MODEL_LEN - floor })).text()
    expect(await sentWith(mightFit.marker)).toBe(1)
  })

  it('refuses before admission: the refused requests use none of the key’s limits', async () => {
    const key = await keyWithLimits({ requestsPerMinute: 1 })
    for (let i = 0; i < 3; i++) {
      const response = await postChat({ model: MODEL, messages: turns(10_000).messages }, { secret: key.secret })
      expect(response.status).toBe(400)
      await response.text()
    }
    expect((await limiterState(key.id)).usage.totals.admitted).toBe(0)
    const fits = await postChat({ model: MODEL, messages: turns(1).messages }, { secret: key.secret })
    expect(fits.status).toBe(200)
    await fits.text()
  })
})

describe('the other routes that prepare a chat request', () => {
  it('refuses a stream session that certainly does not fit, without creating it', async () => {
    const { marker, messages } = turns(10_000)
    const response = await postStream({ model: MODEL, messages })
    expect(response.status).toBe(400)
    expect(((await response.json()) as ErrorBody).error).toMatchObject({ param: 'messages', code: 'context_length_exceeded' })
    expect(await sentWith(marker)).toBe(0)
  })

  it('refuses a Responses request naming its own fields: input, max_output_tokens', async () => {
    const post = (body: unknown) =>
      callWorker('/v1/responses', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })

    const long = turns(10_000)
    const prompt = await post({ model: MODEL, input: long.messages })
    expect(prompt.status).toBe(400)
    const promptError = ((await prompt.json()) as ErrorBody).error
    expect(promptError).toMatchObject({ param: 'input', code: 'context_length_exceeded' })
    expect(promptError.message).toMatch(/However, your request has at least \d+ input tokens\. Please reduce the length of the input\.$/)
    expect(await sentWith(long.marker)).toBe(0)

    const floor = 2000
    const short = turnsWithFloor(floor)
    const output = await post({ model: MODEL, input: short.messages, max_output_tokens: MAX_MODEL_LEN })
    expect(output.status).toBe(400)
    const outputError = ((await output.json()) as ErrorBody).error
    expect(outputError).toMatchObject({ param: 'max_output_tokens', code: 'context_length_exceeded' })
    expect(outputError.message).toBe(
      `'max_output_tokens' is too large: ${MAX_MODEL_LEN}. This model's maximum context length is ${MAX_MODEL_LEN} tokens ` +
        `and your request has at least ${floor} input tokens (${MAX_MODEL_LEN} > ${MAX_MODEL_LEN} - ${floor}).`,
    )
    expect(await sentWith(short.marker)).toBe(0)
  })
})
