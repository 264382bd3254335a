import { describe, expect, it } from 'vitest'
import { chatBody, emulatorV0110, eventually, post, sleep } from './helpers.ts'
import { events, readUntil } from '../support/sse.ts'

// vLLM v0.11.0 sends every exception of the stream generator as a 400 BadRequestError event
// (serving_chat.py chat_completion_stream_generator, serving_engine.py create_streaming_error_response).
const ERROR_EVENT =
  'data: {"error": {"message": "EngineCore encountered an issue. See stack trace (above) for the root cause.", ' +
  '"type": "BadRequestError", "param": null, "code": 400}}\n\n'

/** Reads a body to its end or its failure; returns what arrived and whether it broke. */
async function collect(response: Response): Promise<{ text: string; broken: boolean }> {
  const reader = response.body?.getReader()
  const decoder = new TextDecoder()
  let text = ''
  try {
    for (;;) {
      const read = await reader?.read()
      if (read === undefined || read.done) return { text, broken: false }
      text += decoder.decode(read.value, { stream: true })
    }
  } catch {
    return { text, broken: true }
  }
}

const PENDING = Symbol('pending')
const pendingAfter = <T>(promise: Promise<T>, ms: number) => Promise.race([promise, sleep(ms).then(() => PENDING)])

function streamWith(directive: string) {
  return chatBody(`reasoning_tokens=4 content_tokens=4 ${directive}`, { stream: true })
}

describe('fault injection', () => {
  it.each([
    [503, 'ServiceUnavailableError'],
    [429, 'TooManyRequestsError'],
    [500, 'InternalServerError'],
  ])('refuse:%i answers that status with a vLLM-shaped %s before streaming', async (status, type) => {
    const emulator = await emulatorV0110()
    const response = await post(emulator, '/v1/chat/completions', streamWith(`fault=refuse:${status}`))
    expect(response.status).toBe(status)
    expect(await response.text()).toBe(
      JSON.stringify({ error: { message: `Emulated refusal: ${status} ${type}`, type, param: null, code: status } }),
    )
    expect(emulator.stats()).toMatchObject({ requests: 1, streamsStarted: 0, inFlight: 0 })
  })

  it('hang accepts the request and sends nothing, not even headers, until the client leaves', async () => {
    const emulator = await emulatorV0110()
    const controller = new AbortController()
    const request = post(emulator, '/v1/chat/completions', streamWith('fault=hang'), { signal: controller.signal })
    expect(
      await pendingAfter(
        request.catch(() => 'failed'),
        200,
      ),
    ).toBe(PENDING)
    expect(emulator.stats().inFlight).toBe(1)
    controller.abort()
    await expect(request).rejects.toThrow()
    const stats = await eventually(
      () => emulator.stats(),
      (s) => s.aborted === 1,
    )
    expect(stats).toMatchObject({ aborted: 1, inFlight: 0, streamsStarted: 0 })
  })

  it('stall_after:2 sends the role chunk and two tokens, then goes silent without closing', async () => {
    const emulator = await emulatorV0110()
    const controller = new AbortController()
    const response = await post(emulator, '/v1/chat/completions', streamWith('fault=stall_after:2'), { signal: controller.signal })
    const reader = response.body?.getReader()
    if (reader === undefined) throw new Error('no body')
    const text = await readUntil(reader, (soFar) => events(soFar).length >= 3)
    expect(events(text)).toHaveLength(3)
    expect(await pendingAfter(reader.read(), 200)).toBe(PENDING)
    controller.abort()
    const stats = await eventually(
      () => emulator.stats(),
      (s) => s.aborted === 1,
    )
    expect(stats).toMatchObject({ aborted: 1, inFlight: 0, completed: 0 })
  })

  it('die_after:2 cuts the connection after two token chunks, with no finish and no [DONE]', async () => {
    const emulator = await emulatorV0110()
    const response = await post(emulator, '/v1/chat/completions', streamWith('fault=die_after:2'))
    expect(response.status).toBe(200)
    const { text, broken } = await collect(response)
    expect(broken).toBe(true)
    expect(events(text)).toHaveLength(3)
    expect(text).not.toContain('[DONE]')
    expect(text).not.toContain('finish_reason":"')
    expect(emulator.stats()).toMatchObject({ faulted: 1, aborted: 0, completed: 0, inFlight: 0 })
  })

  it('die_after:0 sends the headers and dies before any data event', async () => {
    const emulator = await emulatorV0110()
    const response = await post(emulator, '/v1/chat/completions', streamWith('fault=die_after:0'))
    expect(response.headers.get('content-type')).toBe('text/event-stream; charset=utf-8')
    expect(await collect(response)).toEqual({ text: '', broken: true })
  })

  it("error_after:2 ends with vLLM's json.dumps 400 BadRequestError event for a dead engine and [DONE]", async () => {
    const emulator = await emulatorV0110()
    const response = await post(emulator, '/v1/chat/completions', streamWith('fault=error_after:2'))
    const { text, broken } = await collect(response)
    expect(broken).toBe(false)
    const all = events(text)
    expect(all).toHaveLength(5)
    expect(all.slice(3)).toEqual([ERROR_EVENT, 'data: [DONE]\n\n'])
    expect(emulator.stats()).toMatchObject({ faulted: 1, inFlight: 0 })
  })

  it('error_after in the legacy format nests the flat ErrorResponse under "error"', async () => {
    const emulator = await emulatorV0110({ errorFormat: 'legacy' })
    const text = await (await post(emulator, '/v1/chat/completions', streamWith('fault=error_after:0'))).text()
    expect(text).toBe(`data: {"error": {"object": "error", ${ERROR_EVENT.slice('data: {"error": {'.length)}data: [DONE]\n\n`)
  })

  it('malformed_after:1 sends one data line that is not JSON, then carries on to [DONE]', async () => {
    const emulator = await emulatorV0110()
    const text = await (await post(emulator, '/v1/chat/completions', streamWith('fault=malformed_after:1'))).text()
    const all = events(text)
    expect(all[2]).toMatch(/^data: \{"id":"chatcmpl-[0-9a-f]*\n\n$/)
    expect(() => JSON.parse(all[2]?.slice(6) ?? '')).toThrow()
    const rest = all.filter((_, index) => index !== 2 && index !== all.length - 1)
    expect(rest.every((event) => JSON.parse(event.slice(6)) !== null)).toBe(true)
    expect(all.at(-1)).toBe('data: [DONE]\n\n')
    expect(emulator.stats().completed).toBe(1)
  })

  it('applies a process-wide fault set through POST /emulator/config, which a directive overrides', async () => {
    const emulator = await emulatorV0110()
    expect((await post(emulator, '/emulator/config', { fault: 'refuse:503' })).status).toBe(200)
    expect((await post(emulator, '/v1/chat/completions', streamWith(''))).status).toBe(503)
    const overridden = await post(emulator, '/v1/chat/completions', streamWith('fault=none'))
    expect(overridden.status).toBe(200)
    expect((await overridden.text()).endsWith('data: [DONE]\n\n')).toBe(true)
  })

  it('turns error_after into a 500 "Internal Server Error" JSON answer and die_after into a cut connection for stream: false', async () => {
    const emulator = await emulatorV0110()
    const failed = await post(emulator, '/v1/chat/completions', chatBody('fault=error_after:1'))
    expect(failed.status).toBe(500)
    // api_server.py create_chat_completion: HTTPException(500), typed with the HTTP phrase.
    expect(await failed.text()).toBe(
      '{"error":{"message":"EngineCore encountered an issue. See stack trace (above) for the root cause.",' +
        '"type":"Internal Server Error","param":null,"code":500}}',
    )
    await expect(post(emulator, '/v1/chat/completions', chatBody('fault=die_after:1'))).rejects.toThrow()
  })
})
