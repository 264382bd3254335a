// The context budget against the backend: the gateway writes no max_tokens of its own (only a
// key's cap), refuses no prompt on its estimate, and retries vLLM's "max_tokens too large" 400 once
// with the room vLLM states when that max_tokens was the gateway's choice.
import { env } from 'cloudflare:workers'
import { describe, expect, it } from 'vitest'
import { clearFleetCache } from '../../src/fleet/registry.ts'
import { backendRecord, callIn, clearFleet, fleetEnv, prepareFleet, writeFleet } from '../support/fleet.ts'
import { keyWithLimits } from '../support/limits.ts'
import { createSession, openEvents, readStream } from '../streams/helpers.ts'
import { callWorker, chatBody, chatInit, postChat, recordedRequests, type RecordedRequest } from '../support/worker.ts'

const SHORT = '[emulator ttft_ms=5 itl_ms=1 reasoning_tokens=2 content_tokens=2]'

let serial = 0
/** A prompt no other test sends, so its requests can be found in the emulator's log. */
function marked(text = ''): { marker: string; text: string } {
  const marker = `ctx-${Date.now().toString(36)}-${serial++}`
  return { marker, text: `${SHORT} ${marker} ${text}` }
}

async function sentWith(marker: string): Promise<RecordedRequest[]> {
  return (await recordedRequests()).filter(
    (entry) => entry.path.startsWith('/v1/chat/completions') && JSON.stringify(entry.body).includes(marker),
  )
}

function postResponses(body: unknown) {
  return callWorker('/v1/responses', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
}

interface ErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null }
}

describe('max_tokens on the way to the backend', () => {
  it('sends a request without max_tokens to the backend without max_tokens', async () => {
    const { marker, text } = marked('What is 2 + 2?')
    const response = await postChat(chatBody(text, { stream: true }))
    expect(response.status).toBe(200)
    await response.text()
    const [sent] = await sentWith(marker)
    expect(sent?.body).not.toHaveProperty('max_tokens')
    expect(sent?.body).not.toHaveProperty('max_completion_tokens')
  })

  it("sends the key's output cap when the client asked for no max_tokens, and the client's own when it is lower", async () => {
    const key = await keyWithLimits({ maxOutputTokens: 50 })
    const unasked = marked()
    await (await postChat(chatBody(unasked.text), { secret: key.secret })).text()
    expect((await sentWith(unasked.marker))[0]?.body).toMatchObject({ max_tokens: 50 })
    const lower = marked()
    await (await postChat(chatBody(lower.text, { max_tokens: 20 }), { secret: key.secret })).text()
    expect((await sentWith(lower.marker))[0]?.body).toMatchObject({ max_tokens: 20 })
  })

  it('lets a prompt the estimate counts over the context reach the backend, which admits it', async () => {
    // The estimate counts a CJK character as a whole token; the backend counts these far lower.
    const { marker, text } = marked('你好'.repeat(2100))
    const response = await postChat(chatBody(text))
    expect(response.status).toBe(200)
    expect(await sentWith(marker)).toHaveLength(1)
  })
})

describe("the backend's context-length refusals", () => {
  // Prompts the gateway's floor (src/schema/prompt-floor.ts) cannot tell are over: CJK text is
  // one token at least for the floor, about two per four characters for vLLM.
  const LONG_CJK = '你好世界'.repeat(3000)
  const MID_CJK = '你好世界'.repeat(800)

  it("passes vLLM's own 400 for a prompt too long on, as context_length_exceeded on messages", async () => {
    const { marker, text } = marked(LONG_CJK)
    const response = await postChat(chatBody(text, { stream: true }))
    expect(response.status).toBe(400)
    const body = (await response.json()) as ErrorBody
    expect(body.error).toMatchObject({ type: 'invalid_request_error', param: 'messages', code: 'context_length_exceeded' })
    expect(body.error.message).toMatch(/maximum context length is 4096 tokens/)
    expect(await sentWith(marker)).toHaveLength(1)
  })

  it.each([false, true])(
    "names input on /v1/responses when vLLM refuses the prompt as too long, with vLLM's numbers (stream: %s)",
    async (stream) => {
      const { marker, text } = marked(LONG_CJK)
      const response = await postResponses({ input: text, stream })
      expect(response.status).toBe(400)
      const { error } = (await response.json()) as ErrorBody
      expect(error).toMatchObject({ param: 'input', code: 'context_length_exceeded' })
      // vLLM v0.20.2's text (the emulator's default; renderers/params.py _token_len_check), which names no chat field.
      expect(error.message).toMatch(
        /maximum context length is 4096 tokens\. However, you requested 0 output tokens and your prompt contains at least \d+ input tokens, for a total of at least \d+ tokens\. Please reduce the length of the input prompt/,
      )
      expect(error.message).not.toMatch(/messages|max_tokens/)
      expect(await sentWith(marker)).toHaveLength(1)
    },
  )

  it('names max_output_tokens on /v1/responses when vLLM refuses the asked output as too large', async () => {
    const { marker, text } = marked(MID_CJK)
    const response = await postResponses({ input: text, max_output_tokens: 3000 })
    expect(response.status).toBe(400)
    const { error } = (await response.json()) as ErrorBody
    expect(error).toMatchObject({ param: 'max_output_tokens', code: 'context_length_exceeded' })
    expect(error.message).toMatch(
      /^This model's maximum context length is 4096 tokens\. However, you requested 3000 output tokens and your prompt contains at least \d+ input tokens/,
    )
    expect(error.message).not.toMatch(/max_tokens|max_completion_tokens|messages/)
    expect(await sentWith(marker)).toHaveLength(1)
  })

  it("passes the 400 on, without a retry, when the too-large max_tokens is the client's own", async () => {
    // About 1,600 tokens for vLLM, a few dozen for the floor: only the backend knows 3000 is too many.
    const { marker, text } = marked(MID_CJK)
    const response = await postChat(chatBody(text, { max_tokens: 3000 }))
    expect(response.status).toBe(400)
    expect(((await response.json()) as ErrorBody).error).toMatchObject({ param: 'messages', code: 'context_length_exceeded' })
    expect(await sentWith(marker)).toHaveLength(1)
  })

  // vLLM v0.20.2 (the emulator's default) states the prompt as "at least 7 input tokens" here: no
  // room, so the retry sends no max_tokens (test/routes/chat-vllm-versions.test.ts has v0.11.0's exact room).
  it.each([false, true])(
    "retries once without max_tokens when the key's cap made max_tokens too large and vLLM states no room (stream: %s)",
    async (stream) => {
      const key = await keyWithLimits({ maxOutputTokens: 4090 })
      const { marker, text } = marked('Solve for x: 3x^2 + 12x - 96 = 0.')
      const response = await postChat(chatBody(text, { stream }), { secret: key.secret })
      expect(response.status).toBe(200)
      await response.text()
      const sent = await sentWith(marker)
      expect(sent.map((entry) => (entry.body as { max_tokens: number }).max_tokens)[0]).toBe(4090)
      expect(sent).toHaveLength(2)
      expect(sent[1]?.body).not.toHaveProperty('max_tokens')
      // Everything but max_tokens is the same request, under a new upstream id.
      expect({ ...sent[1]?.body, max_tokens: 0 }).toEqual({ ...sent[0]?.body, max_tokens: 0 })
      expect(sent[1]?.headers['x-request-id']).not.toBe(sent[0]?.headers['x-request-id'])
    },
  )

  it("retries a stream session's too-large max_tokens from the key's cap the same way", async () => {
    const key = await keyWithLimits({ maxOutputTokens: 4090 })
    const { marker, text } = marked('Solve for x: 3x^2 + 12x - 96 = 0.')
    const session = await createSession(text, { secret: key.secret })
    const events = (await readStream(await openEvents(session.url))).events
    expect(events.at(-1)?.event).toBe('done')
    const sent = await sentWith(marker)
    expect(sent.map((entry) => (entry.body as { max_tokens?: number }).max_tokens)).toEqual([4090, undefined])
  })

  it('counts neither a passed-on nor a retried context refusal as a backend failure: the circuit stays closed', async () => {
    await prepareFleet()
    await writeFleet([backendRecord(0)])
    clearFleetCache(env.FLEET)
    const capped = await keyWithLimits({ maxOutputTokens: 4090 })
    const send = async (body: unknown, secret?: string) => {
      const init = chatInit(body)
      const headers = secret ? { ...init.headers, authorization: `Bearer ${secret}` } : init.headers
      const { response, settled } = await callIn(testEnv, '/v1/chat/completions', { ...init, headers })
      await response.text()
      await settled()
      return response.status
    }
    // Counted as failures, these refusals would open the circuit (FLEET_TEST_ENV: three in a row, or
    // half of ten outcomes), and with one backend an open circuit is a 503.
    const testEnv = fleetEnv()
    try {
      for (let i = 0; i < 4; i++) {
        expect(await send(chatBody(marked(MID_CJK).text, { max_tokens: 3000 }))).toBe(400)
        expect(await send(chatBody(marked().text), capped.secret)).toBe(200)
      }
    } finally {
      await clearFleet()
      clearFleetCache(env.FLEET)
    }
  })
})
