// The gateway against both vLLM releases the emulator offers (--vllm-version, issue 30), on the
// wire changes between them it relies on: the context-length refusal it retries with the room left
// (v0.11.0 serving_engine.py _validate_input; v0.20.2 renderers/params.py TokenizeParams, whose
// "at least" count states no room), the reasoning field (reasoning_content; reasoning), and a dead
// engine's in-stream error (400 BadRequestError; 500 InternalServerError).
import { env } from 'cloudflare:workers'
import { afterEach, describe, expect, it } from 'vitest'
import { clearFleetCache } from '../../src/fleet/registry.ts'
import { backendRecord, callIn, clearFleet, fleetEnv, fleetUrls, prepareFleet, writeFleet } from '../support/fleet.ts'
import { keyWithLimits } from '../support/limits.ts'
import { chatBody, chatInit } from '../support/worker.ts'

const VERSIONS = ['0.11.0', '0.20.2'] as const
const SHORT = '[emulator ttft_ms=5 itl_ms=1 reasoning_tokens=2 content_tokens=2]'
const MID_CJK = '你好世界'.repeat(800)

let serial = 0
function marked(text = ''): { marker: string; text: string } {
  const marker = `ver-${Date.now().toString(36)}-${serial++}`
  return { marker, text: `${SHORT} ${marker} ${text}` }
}

async function configure(patch: Record<string, unknown>): Promise<void> {
  const response = await fetch(`${fleetUrls[0]}/emulator/config`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(patch),
  })
  if (!response.ok) throw new Error(`emulator config: ${response.status}`)
}

async function sentWith(marker: string): Promise<{ body: Record<string, unknown> }[]> {
  const log = (await (await fetch(`${fleetUrls[0]}/emulator/requests`)).json()) as { path: string; body: unknown }[]
  return log.filter((entry) => entry.path.startsWith('/v1/chat/completions') && JSON.stringify(entry.body).includes(marker)) as {
    body: Record<string, unknown>
  }[]
}

/** One backend, the fleet emulator at `version`; the call's response and its settled work. */
async function onVersion(version: (typeof VERSIONS)[number]) {
  await prepareFleet()
  await configure({ vllmVersion: version })
  await writeFleet([backendRecord(0)])
  clearFleetCache(env.FLEET)
  const testEnv = fleetEnv()
  return async (body: unknown, secret?: string) => {
    const init = chatInit(body)
    const headers = secret ? { ...init.headers, authorization: `Bearer ${secret}` } : init.headers
    const { response, settled } = await callIn(testEnv, '/v1/chat/completions', { ...init, headers })
    const text = await response.text()
    await settled()
    return { status: response.status, text }
  }
}

afterEach(async () => {
  await configure({ vllmVersion: '0.20.2', fault: 'none' })
  await clearFleet()
  clearFleetCache(env.FLEET)
})

describe.each(VERSIONS)('the gateway against vLLM %s', (version) => {
  it("retries a too-large max_tokens from the key's cap once, with the room the refusal leaves", async () => {
    const send = await onVersion(version)
    const key = await keyWithLimits({ maxOutputTokens: 4090 })
    const { marker, text } = marked('Solve for x: 3x^2 + 12x - 96 = 0.')
    const answer = await send(chatBody(text, { stream: true }), key.secret)
    expect(answer.status).toBe(200)
    expect(answer.text).toContain('data: [DONE]')
    const sent = await sentWith(marker)
    expect(sent).toHaveLength(2)
    expect(sent[0]?.body.max_tokens).toBe(4090)
    if (version === '0.11.0') {
      // "'max_tokens' or 'max_completion_tokens' is too large: 4090. ... your request has N input tokens": the room, exactly.
      expect(sent[1]?.body.max_tokens).toEqual(expect.any(Number))
      expect(sent[1]?.body.max_tokens).toBeLessThan(4090)
    } else {
      // "...your prompt contains at least 7 input tokens": no room stated, so no max_tokens: vLLM gives the rest of the context.
      expect(sent[1]?.body).not.toHaveProperty('max_tokens')
    }
  })

  it("passes a too-large max_tokens of the client's own on as context_length_exceeded, without a retry", async () => {
    const send = await onVersion(version)
    const { marker, text } = marked(MID_CJK)
    const answer = await send(chatBody(text, { max_tokens: 3000 }))
    expect(answer.status).toBe(400)
    expect(JSON.parse(answer.text).error).toMatchObject({ param: 'messages', code: 'context_length_exceeded' })
    expect(JSON.parse(answer.text).error.message).toMatch(/maximum context length is 4096 tokens/)
    expect(await sentWith(marker)).toHaveLength(1)
  })

  it('gives the client reasoning_content whichever field vLLM sends', async () => {
    const send = await onVersion(version)
    const answer = await send(chatBody(marked().text, { stream: true }))
    expect(answer.status).toBe(200)
    expect(answer.text).toContain('"reasoning_content":')
    expect(answer.text).not.toContain('"reasoning":')
  })

  it("turns a dead engine's in-stream error into the gateway's 5xx error event", async () => {
    const send = await onVersion(version)
    await configure({ deadShutdownMs: null })
    try {
      const answer = await send(chatBody(`${marked().text} [emulator reasoning_tokens=6 fault=error_after:2]`, { stream: true }))
      expect(answer.status).toBe(200)
      const error = answer.text.split('\n\n').find((frame) => frame.includes('"error"'))
      expect(error).toBeDefined()
      // v0.11.0 labels it 400 BadRequestError, v0.20.2 500 InternalServerError: a backend fault either way (relay/chunk.ts isBackendFault).
      expect(JSON.parse(error!.replace(/^data: /, '')).error).toMatchObject({
        code: 502,
        message: 'EngineCore encountered an issue. See stack trace (above) for the root cause.',
      })
      expect(error).not.toContain('BadRequestError')
    } finally {
      await configure({ deadShutdownMs: 5000, engineDead: false })
    }
  })
})
