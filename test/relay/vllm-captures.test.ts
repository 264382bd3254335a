// Replays captures of real vLLM output (test/fixtures/vllm/, sources in SOURCES.md) through the
// Worker. The fixture server sends each capture byte for byte, cut into pieces mid-line and
// mid-UTF-8 character; every expectation is read from the capture itself, so what a client gets
// is checked against what vLLM really sent, not against the emulator.
import { env } from 'cloudflare:workers'
import { beforeAll, describe, expect, it } from 'vitest'
import { callIn, clearFleet, type TestEnv } from '../support/fleet.ts'
import { VLLM_FIXTURES, fixturePrompt, joined, readStream, writePlan, type FixtureName, type StreamTexts } from '../support/fixtures.ts'
import { chatBody, chatInit } from '../support/worker.ts'

const fixtureServerUrl = (env as unknown as { FIXTURE_SERVER_URL: string }).FIXTURE_SERVER_URL
/** Every request goes to the fixture server, a backend with vLLM's deepseek_r1 parser... */
const captureEnv: TestEnv = { ...env, BACKEND_URLS: fixtureServerUrl }
/** ...or one started without --reasoning-parser, as the deployment declares it (BACKEND_REASONING_PARSER). */
const noParserEnv: TestEnv = Object.assign({}, captureEnv, { BACKEND_REASONING_PARSER: 'none' })

interface Replayed {
  status: number
  contentType: string
  body: string
}

async function capture(name: FixtureName): Promise<string> {
  const response = await fetch(`${fixtureServerUrl}/fixtures/${name}`)
  if (!response.ok) throw new Error(`fixture ${name}: ${response.status}`)
  return response.text()
}

/** Sends a chat request whose answer is the named capture and reads the whole response. */
async function replay(name: FixtureName, extra: Record<string, unknown> = {}, testEnv: TestEnv = captureEnv): Promise<Replayed> {
  const { response, settled } = await callIn(testEnv, '/v1/chat/completions', chatInit(chatBody(fixturePrompt(name), extra)))
  const body = await response.text()
  await settled()
  return { status: response.status, contentType: response.headers.get('content-type') ?? '', body }
}

type Json = Record<string, unknown>

/** The data events of a client stream, parsed (the final `[DONE]` left out). */
function events(stream: StreamTexts): Json[] {
  return stream.payloads.filter((payload) => payload !== '[DONE]').map((payload) => JSON.parse(payload) as Json)
}

function deltas(stream: StreamTexts): Json[] {
  return events(stream).flatMap((event) =>
    ((event.choices as Json[] | undefined) ?? []).map((choice) => (choice.delta as Json | undefined) ?? {}),
  )
}

const withoutThinkTags = (text: string) => text.replaceAll('<think>', '').replaceAll('</think>', '')

beforeAll(async () => {
  await clearFleet()
})

describe('the fixture server', () => {
  it.each(Object.keys(VLLM_FIXTURES) as FixtureName[])(
    'writes %s in pieces cut inside lines, and inside a UTF-8 character when it has one',
    async (name) => {
      const bytes = new Uint8Array(await (await fetch(`${fixtureServerUrl}/fixtures/${name}`)).arrayBuffer())
      const pieces = writePlan(bytes)
      expect(Buffer.concat(pieces)).toEqual(Buffer.from(bytes))
      expect(pieces.length).toBeGreaterThan(3)
      const ends = pieces.slice(0, -1).map((piece) => piece.at(-1))
      expect(ends.some((byte) => byte !== 0x0a)).toBe(true)
      const multiByte = bytes.some((byte) => byte >= 0xc0)
      if (multiByte) expect(ends.some((byte) => byte !== undefined && byte >= 0xc0)).toBe(true)
    },
  )
})

describe('a reasoning_content capture with usage on every chunk (Workers AI, Qwen3-30B)', () => {
  const name = 'workers-ai-qwen3-30b-reasoning-content'

  it('streams every reasoning and answer text of the capture, in order, as reasoning_content and content', async () => {
    const expected = readStream(await capture(name))
    const replayed = await replay(name, { stream: true })
    expect(replayed.status).toBe(200)
    expect(replayed.contentType).toContain('text/event-stream')
    const got = readStream(replayed.body)
    expect(joined(got.choices.get(0))).toEqual(joined(expected.choices.get(0)))
    expect(joined(got.choices.get(0)).reasoning).not.toBe('')
    expect(deltas(got).filter((delta) => 'reasoning' in delta)).toEqual([])
  })

  it('passes the tool-call argument fragments and the finish reason on', async () => {
    const expected = readStream(await capture(name)).choices.get(0)
    const got = readStream((await replay(name, { stream: true })).body).choices.get(0)
    expect(got?.toolArguments).toEqual(expected?.toolArguments)
    expect(got?.finishReason).toBe(expected?.finishReason)
  })

  it('ends the stream with data: [DONE] and forwards no usage the client did not ask for', async () => {
    const got = readStream((await replay(name, { stream: true })).body)
    expect(got.payloads.at(-1)).toBe('[DONE]')
    expect(events(got).filter((event) => event.usage != null || (Array.isArray(event.choices) && event.choices.length === 0))).toEqual([])
  })

  it('forwards the final usage chunk before [DONE] when the client asked with stream_options.include_usage', async () => {
    const captured = events(readStream(await capture(name)))
    const got = readStream((await replay(name, { stream: true, stream_options: { include_usage: true } })).body)
    expect(got.payloads.at(-1)).toBe('[DONE]')
    const last = events(got).at(-1)
    expect(last?.choices).toEqual([])
    expect(last?.usage).toEqual(captured.at(-1)?.usage)
  })

  it('collects the same texts and the final usage into one chat.completion for stream: false', async () => {
    const expected = readStream(await capture(name))
    const replayed = await replay(name, { stream: false })
    expect(replayed.status).toBe(200)
    const completion = JSON.parse(replayed.body) as {
      object: string
      choices: { message: { content: string; reasoning_content?: string }; finish_reason: string | null }[]
      usage: unknown
    }
    expect(completion.object).toBe('chat.completion')
    const { content, reasoning } = joined(expected.choices.get(0))
    expect(completion.choices[0]?.message.content).toBe(content)
    expect(completion.choices[0]?.message.reasoning_content).toBe(reasoning)
    expect(completion.choices[0]?.finish_reason).toBe(expected.choices.get(0)?.finishReason)
    expect(completion.usage).toEqual(events(expected).at(-1)?.usage)
  })
})

describe('a capture of the late-2025 build that sends "reasoning_content": null in every delta (NEAR AI, DeepSeek-V3.1)', () => {
  const name = 'nearai-deepseek-v3.1-reasoning-content-null'

  it('streams the answer text of the capture in order, with no reasoning field on deltas that carry no reasoning', async () => {
    const expected = readStream(await capture(name))
    const got = readStream((await replay(name, { stream: true })).body)
    expect(joined(got.choices.get(0))).toEqual(joined(expected.choices.get(0)))
    expect(deltas(got).filter((delta) => 'reasoning' in delta || delta.reasoning_content === null)).toEqual([])
    expect(got.payloads.at(-1)).toBe('[DONE]')
  })

  it('forwards the usage chunk only to a client that asked for it', async () => {
    const captured = events(readStream(await capture(name)))
    const without = events(readStream((await replay(name, { stream: true })).body))
    expect(without.filter((event) => event.usage != null)).toEqual([])
    const withUsage = events(readStream((await replay(name, { stream: true, stream_options: { include_usage: true } })).body))
    expect(withUsage.at(-1)?.usage).toEqual(captured.at(-1)?.usage)
  })

  it('collects the answer into one chat.completion without a reasoning_content for stream: false', async () => {
    const expected = joined(readStream(await capture(name)).choices.get(0))
    const completion = JSON.parse((await replay(name, { stream: false })).body) as { choices: { message: Json; finish_reason: string }[] }
    expect(completion.choices[0]?.message).toEqual({ role: 'assistant', content: expected.content })
    expect(completion.choices[0]?.finish_reason).toBe('stop')
  })
})

describe.each<FixtureName>(['instruct-kr-qwen3-0.6b-no-reasoning-parser', 'pycon-kr-qwen3-0.6b-no-reasoning-parser'])(
  'a capture from vLLM 0.9.2 without a reasoning parser (%s)',
  (name) => {
    it('delivers every text of the capture in order, multi-byte characters whole, and ends with [DONE]', async () => {
      const expected = readStream(await capture(name)).choices.get(0)
      const replayed = await replay(name, { stream: true }, noParserEnv)
      expect(replayed.status).toBe(200)
      const got = readStream(replayed.body)
      // The think tags are markup the gateway may drop; no text may be lost, reordered or broken.
      expect(withoutThinkTags(got.choices.get(0)?.sequence.join('') ?? '')).toBe(withoutThinkTags(expected?.sequence.join('') ?? ''))
      expect(replayed.body).not.toContain('\uFFFD')
      expect(got.payloads.at(-1)).toBe('[DONE]')
    })

    // The publisher elided the middle of these streams, `</think>` with it: every text of the
    // replay comes before the end of the reasoning, so none of it is the answer.
    it('gives the reasoning inside <think> to the client as reasoning_content, never as content', async () => {
      const got = readStream((await replay(name, { stream: true }, noParserEnv)).body)
      const texts = deltas(got).filter((delta) => !!delta.content || !!delta.reasoning_content)
      expect(texts.filter((delta) => typeof delta.content === 'string' && delta.content !== '')).toEqual([])
      expect(joined(got.choices.get(0)).reasoning).not.toBe('')
      expect(deltas(got).filter((delta) => 'reasoning' in delta)).toEqual([])
    })

    it('collects the same text, as reasoning_content, into one chat.completion for stream: false', async () => {
      const expected = readStream(await capture(name)).choices.get(0)
      const replayed = await replay(name, { stream: false }, noParserEnv)
      expect(replayed.status).toBe(200)
      const message = (JSON.parse(replayed.body) as { choices: { message: { content: string | null; reasoning_content?: string } }[] })
        .choices[0]?.message
      // No answer text came: null, as vLLM's reasoning parser gives it (`content or None`).
      expect(message?.content).toBeNull()
      expect(withoutThinkTags(message?.reasoning_content ?? '')).toBe(withoutThinkTags(expected?.sequence.join('') ?? ''))
    })
  },
)

describe('a capture of the 2026 `reasoning`-only field, cut by its publisher after five events', () => {
  const name = 'qwen3-235b-reasoning-only-first-5-events'

  it('renames reasoning to reasoning_content and streams every reasoning text in order', async () => {
    const expected = readStream(await capture(name)).choices.get(0)
    const got = readStream((await replay(name, { stream: true })).body)
    expect(joined(got.choices.get(0)).reasoning).toBe(joined(expected).reasoning)
    expect(deltas(got).filter((delta) => 'reasoning' in delta)).toEqual([])
    expect(
      deltas(got)
        .filter((delta) => typeof delta.reasoning_content === 'string')
        .map((delta) => delta.reasoning_content),
    ).toEqual(expected?.reasoning)
  })

  it('ends a stream that stopped before [DONE] with an OpenAI-shaped error event, then [DONE]', async () => {
    const got = readStream((await replay(name, { stream: true })).body)
    expect(got.payloads.at(-1)).toBe('[DONE]')
    const error = events(got).at(-1)?.error as Json | undefined
    expect(error).toEqual(expect.objectContaining({ message: expect.any(String), type: expect.any(String) }))
  })

  it('answers stream: false with an OpenAI-shaped error, not a partial completion', async () => {
    const replayed = await replay(name, { stream: false })
    expect(replayed.status).toBeGreaterThanOrEqual(500)
    expect(JSON.parse(replayed.body)).toEqual({ error: expect.objectContaining({ message: expect.any(String), type: expect.any(String) }) })
  })
})

describe('a 400 that vLLM 0.24 answered before streaming (grammar error)', () => {
  const name = 'trec-rag-vllm-0.24-grammar-error-400'

  it.each([true, false])("reaches the client as a 400 carrying vLLM's message (stream: %s)", async (stream) => {
    const vllm = JSON.parse(await capture(name)) as { error: { message: string } }
    const replayed = await replay(name, { stream })
    expect(replayed.status).toBe(400)
    expect(replayed.contentType).toContain('application/json')
    const body = JSON.parse(replayed.body) as { error: Json }
    expect(body.error).toEqual(expect.objectContaining({ message: vllm.error.message, type: expect.any(String) }))
    expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type'])
  })
})
