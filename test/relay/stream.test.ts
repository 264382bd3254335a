import { describe, expect, it } from 'vitest'
import { relaySse, type RelaySource, type RelayStart } from '../../src/relay/stream.ts'
import { UpstreamCall } from '../../src/dispatch/upstream-call.ts'
import { manualStream, streamOf } from '../support/streams.ts'
import { frameReader, frames, readAll } from '../support/sse.ts'

const role =
  '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}'
const token = (text: string) =>
  `{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"${text}"},"logprobs":null,"finish_reason":null}]}`
const usage =
  '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":1,"total_tokens":3,"completion_tokens":2}}'
const sse = (...payloads: string[]) => payloads.map((payload) => `data: ${payload}\n\n`).join('')

function newCall(timeouts = { firstEventMs: 5_000, idleMs: 5_000 }) {
  return new UpstreamCall(undefined, timeouts)
}

function relay(upstream: ReadableStream<Uint8Array>, options: { forwardUsage?: boolean; keepAliveMs?: number; call?: UpstreamCall } = {}) {
  const call = options.call ?? newCall()
  return {
    call,
    readable: relaySse(Promise.resolve({ first: { upstream, call }, next: null }), {
      forwardUsage: options.forwardUsage ?? false,
      forwardChunkUsage: false,
      keepAliveMs: options.keepAliveMs ?? 10_000,
    }),
  }
}

describe('relaySse', () => {
  it('relays every event unchanged and in order, then [DONE], then closes', async () => {
    const { readable } = relay(streamOf(sse(role, token('Hel'), token('lo'), '[DONE]')))
    expect(frames(await readAll(readable))).toEqual([`data: ${role}`, `data: ${token('Hel')}`, `data: ${token('lo')}`, 'data: [DONE]'])
  })

  it('drops the usage chunk when the client did not ask for it', async () => {
    const { readable } = relay(streamOf(sse(role, token('a'), usage, '[DONE]')))
    expect(frames(await readAll(readable))).toEqual([`data: ${role}`, `data: ${token('a')}`, 'data: [DONE]'])
  })

  it('forwards the usage chunk when the client asked for it', async () => {
    const { readable } = relay(streamOf(sse(role, usage, '[DONE]')), { forwardUsage: true })
    expect(frames(await readAll(readable))).toContain(`data: ${usage}`)
  })

  it('sends each event to the client before the next one exists upstream', async () => {
    const upstream = manualStream()
    const { readable } = relay(upstream.stream)
    const client = frameReader(readable)
    upstream.push(sse(role))
    expect(await client.next()).toBe(`data: ${role}`)
    upstream.push(sse(token('x')))
    expect(await client.next()).toBe(`data: ${token('x')}`)
    upstream.push(sse('[DONE]'))
    expect(await client.next()).toBe('data: [DONE]')
    expect(await client.next()).toBeNull()
  })

  it('stops reading upstream while the client does not read, then delivers everything in order', async () => {
    const upstream = manualStream()
    const { readable } = relay(upstream.stream)
    upstream.push(sse(role))
    const tokens = Array.from({ length: 40 }, (_, i) => token(`t${i}`))
    for (const payload of tokens) {
      upstream.push(sse(payload))
      await new Promise((resolve) => setTimeout(resolve, 1))
    }
    // The relay has stopped pulling: chunks pile up upstream instead of in the gateway.
    expect(upstream.desiredSize()).toBeLessThan(-10)
    upstream.push(sse('[DONE]'))
    expect(frames(await readAll(readable))).toEqual([`data: ${role}`, ...tokens.map((t) => `data: ${t}`), 'data: [DONE]'])
  })

  it('sends keep-alive comments while waiting for the first token', async () => {
    const upstream = manualStream()
    const { readable } = relay(upstream.stream, { keepAliveMs: 20 })
    const client = frameReader(readable)
    expect(await client.next()).toBe(': keep-alive')
    upstream.push(sse(role, '[DONE]'))
    const rest: string[] = []
    for (let frame = await client.next(); frame !== null; frame = await client.next()) rest.push(frame)
    expect(rest.filter((frame) => frame !== ': keep-alive')).toEqual([`data: ${role}`, 'data: [DONE]'])
  })

  it('sends keep-alives during a long silence mid-stream', async () => {
    const upstream = manualStream()
    const { readable } = relay(upstream.stream, { keepAliveMs: 20 })
    const client = frameReader(readable)
    upstream.push(sse(role))
    expect(await client.next()).toBe(`data: ${role}`)
    expect(await client.next()).toBe(': keep-alive')
    upstream.push(sse('[DONE]'))
  })

  it('probes the client at once, and confirms the probe, when its 200 is committed before a backend accepted', async () => {
    // workerd reports a gone client only on a write, and the first write after it left still succeeds.
    const { promise: accepted, resolve } = Promise.withResolvers<RelayStart<RelaySource>>()
    const readable = relaySse(accepted, { forwardUsage: false, forwardChunkUsage: false, keepAliveMs: 10_000, probeAtOnce: true })
    const client = frameReader(readable)
    expect(await client.next()).toBe(':')
    expect(await client.next()).toBe(':')
    resolve({ first: { upstream: streamOf(sse(role, '[DONE]')), call: newCall() }, next: null })
    expect(await client.next()).toBe(`data: ${role}`)
    expect(await client.next()).toBe('data: [DONE]')
    expect(await client.next()).toBeNull()
  })

  it('ends with an error event and [DONE] when the upstream breaks before the first event', async () => {
    const upstream = manualStream()
    const { readable } = relay(upstream.stream)
    upstream.fail(new Error('reset'))
    expect(frames(await readAll(readable))).toEqual([
      'data: {"error": {"message": "The connection to the backend was lost mid-stream.", "type": "server_error", "param": null, "code": 502}}',
      'data: [DONE]',
    ])
  })

  it("relays a request-fault error event (vLLM's 400 for the request's own fault) unchanged, even as the first event", async () => {
    const error = '{"error": {"message": "Token id 999999 is out of vocabulary", "type": "BadRequestError", "param": null, "code": 400}}'
    expect(frames(await readAll(relay(streamOf(sse(error, '[DONE]'))).readable))).toEqual([`data: ${error}`, 'data: [DONE]'])
  })

  it("relays a backend failure's error event as a server_error with its 5xx code, keeping vLLM's message", async () => {
    const error =
      '{"error": {"message": "EngineCore encountered an issue. See stack trace (above) for the root cause.", "type": "BadRequestError", "param": null, "code": 400}}'
    expect(frames(await readAll(relay(streamOf(sse(error, '[DONE]'))).readable))).toEqual([
      'data: {"error": {"message": "EngineCore encountered an issue. See stack trace (above) for the root cause.", "type": "server_error", "param": null, "code": 502}}',
      'data: [DONE]',
    ])
  })

  it('ends with an error event and [DONE] when a backend line grows past the parser bound', async () => {
    const upstream = manualStream()
    const { readable } = relay(upstream.stream)
    upstream.push(sse(role, token('a')) + 'data: ')
    const piece = 'y'.repeat(256 * 1024)
    for (let i = 0; i < 6; i++) upstream.push(piece)
    const sent = frames(await readAll(readable))
    expect(sent.slice(0, 2)).toEqual([`data: ${role}`, `data: ${token('a')}`])
    expect(sent.at(-2)).toContain('"code": 502')
    expect(sent.at(-1)).toBe('data: [DONE]')
  })

  it('ends with an error event and [DONE] when the upstream dies mid-stream', async () => {
    const upstream = manualStream()
    const { readable } = relay(upstream.stream)
    upstream.push(sse(role, token('a')))
    const reading = readAll(readable)
    setTimeout(() => upstream.fail(new Error('reset')), 5)
    const sent = frames(await reading)
    expect(sent.slice(0, 2)).toEqual([`data: ${role}`, `data: ${token('a')}`])
    expect(sent.slice(2)).toEqual([
      'data: {"error": {"message": "The connection to the backend was lost mid-stream.", "type": "server_error", "param": null, "code": 502}}',
      'data: [DONE]',
    ])
  })

  it('ends with an error event and [DONE] when the upstream closes without [DONE]', async () => {
    const sent = frames(await readAll(relay(streamOf(sse(role, token('a')))).readable))
    expect(sent.at(-2)).toContain('"code": 502')
    expect(sent.at(-2)).toContain('closed the stream before it finished')
    expect(sent.at(-1)).toBe('data: [DONE]')
  })

  it('ends with an error event and [DONE] on a malformed event, and stops the upstream', async () => {
    const upstream = manualStream()
    const { readable } = relay(upstream.stream)
    upstream.push(sse(role, '{"id":"chatcmpl-'))
    const sent = frames(await readAll(readable))
    expect(sent).toEqual([
      `data: ${role}`,
      'data: {"error": {"message": "The backend sent a malformed event.", "type": "server_error", "param": null, "code": 502}}',
      'data: [DONE]',
    ])
    await upstream.cancelled
  })

  it('passes an upstream error event on once streaming has started, a backend failure as a server_error', async () => {
    const error = '{"error": {"message": "boom", "type": "InternalServerError", "param": null, "code": 500}}'
    const sent = frames(await readAll(relay(streamOf(sse(role, error, '[DONE]'))).readable))
    expect(sent).toEqual([
      `data: ${role}`,
      'data: {"error": {"message": "boom", "type": "server_error", "param": null, "code": 502}}',
      'data: [DONE]',
    ])
  })

  it('cancels the upstream when the client has gone away and the next event cannot be delivered', async () => {
    // A silent upstream is stopped through request.signal instead (see test/routes/chat.test.ts).
    const upstream = manualStream()
    const { readable, call } = relay(upstream.stream)
    const client = frameReader(readable)
    upstream.push(sse(role))
    await client.next()
    await client.cancel()
    upstream.push(sse(token('unwanted')))
    await upstream.cancelled
    expect(call.stopReason).toBe('client_gone')
    expect(call.signal.aborted).toBe(true)
  })

  it('ends with a 504 error event and [DONE] when no first event arrives within the deadline', async () => {
    const upstream = manualStream()
    const call = newCall({ firstEventMs: 30, idleMs: 5_000 })
    const { readable } = relay(upstream.stream, { call })
    expect(frames(await readAll(readable))).toEqual([
      'data: {"error": {"message": "The backend sent no first event within 30 ms.", "type": "timeout_error", "param": null, "code": 504}}',
      'data: [DONE]',
    ])
  })

  it('ends with a 504 error event when the upstream falls silent mid-stream', async () => {
    const upstream = manualStream()
    const call = newCall({ firstEventMs: 5_000, idleMs: 30 })
    const { readable } = relay(upstream.stream, { call })
    upstream.push(sse(role))
    const sent = frames(await readAll(readable))
    expect(sent.at(-2)).toContain('"code": 504')
    expect(sent.at(-1)).toBe('data: [DONE]')
  })
})
