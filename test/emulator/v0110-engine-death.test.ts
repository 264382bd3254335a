// A dead engine as vLLM v0.11.0 reports it: the mid-stream 400 event (serving_chat.py stream
// generator's except, serving_engine.py create_streaming_error_response), the pre-stream and
// stream: false 500 (api_server.py HTTPException handler), /health 503, then the port closing
// (launcher.py watchdog_loop / terminate_if_errored).

import { describe, expect, it } from 'vitest'
import type { Emulator } from '../../gpu-backend/emulator/server.ts'
import { chatBody, emulatorV0110, eventually, MODEL, post } from './helpers.ts'
import { events, readUntil } from '../support/sse.ts'

const DEAD_MESSAGE = 'EngineCore encountered an issue. See stack trace (above) for the root cause.'
const DEAD_EVENT = `data: {"error": {"message": "${DEAD_MESSAGE}", "type": "BadRequestError", "param": null, "code": 400}}\n\n`
const DEAD_BODY = `{"error":{"message":"${DEAD_MESSAGE}","type":"Internal Server Error","param":null,"code":500}}`
const DONE = 'data: [DONE]\n\n'

/** A stream long enough to be in flight when the engine dies. */
function longStream(directive = '') {
  return chatBody(`itl_ms=20 reasoning_tokens=200 ${directive}`, { stream: true })
}

/** Starts a stream and waits for its first token chunk (role chunk + one more event). */
async function streamInFlight(emulator: Emulator, directive = '') {
  const response = await post(emulator, '/v1/chat/completions', longStream(directive))
  const reader = response.body!.getReader()
  const start = await readUntil(reader, (text) => events(text).length >= 2)
  return { response, rest: async () => start + (await readUntil(reader, (text) => text.endsWith(DONE))) }
}

describe('a dead engine (vLLM v0.11.0)', () => {
  it('ends every in-flight stream with the 400 BadRequestError event and [DONE] when the engine dies', async () => {
    const emulator = await emulatorV0110({ deadShutdownMs: null })
    const first = await streamInFlight(emulator)
    const second = await streamInFlight(emulator)
    emulator.configure({ engineDead: true })
    for (const stream of [first, second]) {
      const all = events(await stream.rest())
      expect(all.slice(-2)).toEqual([DEAD_EVENT, DONE])
      expect(all.slice(0, -2).every((event) => event.startsWith('data: {"id":"chatcmpl-'))).toBe(true)
    }
    expect(emulator.stats()).toMatchObject({ faulted: 2, inFlight: 0 })
  })

  it('kills the whole engine from one request with dead_after:N, failing the other streams too', async () => {
    const emulator = await emulatorV0110({ deadShutdownMs: null })
    const other = await streamInFlight(emulator)
    const killer = await (
      await post(emulator, '/v1/chat/completions', chatBody('reasoning_tokens=8 fault=dead_after:2', { stream: true }))
    ).text()
    expect(events(killer)).toHaveLength(5) // role chunk, 2 token chunks, the error, [DONE]
    expect(events(killer).slice(-2)).toEqual([DEAD_EVENT, DONE])
    expect(events(await other.rest()).slice(-2)).toEqual([DEAD_EVENT, DONE])
    expect(emulator.options.engineDead).toBe(true)
  })

  it('answers new requests with the pre-stream 500 "Internal Server Error", stream or not, after the model check', async () => {
    const emulator = await emulatorV0110({ engineDead: true, deadShutdownMs: null })
    for (const stream of [true, false]) {
      const response = await post(emulator, '/v1/chat/completions', chatBody('', { stream }))
      expect(response.status).toBe(500)
      expect(response.headers.get('content-type')).toBe('application/json')
      expect(await response.text()).toBe(DEAD_BODY)
    }
    const completion = await post(emulator, '/v1/completions', { model: MODEL, prompt: 'Hi' })
    expect([completion.status, await completion.text()]).toEqual([500, DEAD_BODY])
    // serving_chat.py create_chat_completion checks the model before the engine.
    expect((await post(emulator, '/v1/chat/completions', { ...chatBody(), model: 'other' })).status).toBe(404)
  })

  it('answers a stream: false request in flight with the 500 when the engine dies', async () => {
    const emulator = await emulatorV0110({ deadShutdownMs: null })
    const pending = post(emulator, '/v1/chat/completions', chatBody('itl_ms=20 reasoning_tokens=200'))
    await eventually(
      () => emulator.stats().tokensGenerated,
      (tokens) => tokens > 0,
    )
    emulator.configure({ engineDead: true })
    const response = await pending
    expect([response.status, await response.text()]).toEqual([500, DEAD_BODY])
  })

  it('fails a stream still waiting for a slot with the error as its first event', async () => {
    const emulator = await emulatorV0110({ maxNumSeqs: 1, deadShutdownMs: null })
    const running = await streamInFlight(emulator)
    const waiting = await post(emulator, '/v1/chat/completions', longStream())
    await eventually(
      () => emulator.load().waiting,
      (count) => count === 1,
    )
    emulator.configure({ engineDead: true })
    expect(await waiting.text()).toBe(DEAD_EVENT + DONE)
    expect(events(await running.rest()).slice(-2)).toEqual([DEAD_EVENT, DONE])
  })

  it('answers /health 503 once the engine is dead, then closes the port after deadShutdownMs', async () => {
    const emulator = await emulatorV0110({ deadShutdownMs: 300 })
    expect((await fetch(`${emulator.url}/health`)).status).toBe(200)
    await post(emulator, '/emulator/config', { engineDead: true })
    expect((await fetch(`${emulator.url}/health`)).status).toBe(503)
    const closed = await eventually(
      () =>
        fetch(`${emulator.url}/health`).then(
          () => 'open',
          () => 'closed',
        ),
      (state) => state === 'closed',
      3000,
    )
    expect(closed).toBe('closed')
  })

  it('keeps the port open with deadShutdownMs null (VLLM_KEEP_ALIVE_ON_ENGINE_DEATH), and engineDead: false revives the engine', async () => {
    const emulator = await emulatorV0110({ deadShutdownMs: null, engineDead: true })
    expect((await fetch(`${emulator.url}/health`)).status).toBe(503)
    emulator.configure({ engineDead: false })
    expect((await fetch(`${emulator.url}/health`)).status).toBe(200)
    const text = await (await post(emulator, '/v1/chat/completions', chatBody('', { stream: true }))).text()
    expect(text.endsWith(DONE)).toBe(true)
    expect(text).not.toContain('"error"')
  })
})
