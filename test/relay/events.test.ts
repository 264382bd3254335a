import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { MAX_EVENT_CHARS, pumpEvents } from '../../src/relay/events.ts'
import { bytes, manualStream, streamOf } from '../support/streams.ts'

async function collect(stream: ReadableStream<Uint8Array>) {
  const events: string[] = []
  const end = await pumpEvents(stream, (data) => {
    events.push(data)
    return data !== '[DONE]'
  })
  return { events, end }
}

describe('pumpEvents', () => {
  it('stops a backend line that never ends at MAX_EVENT_CHARS, cancelling the upstream, after the events before it', async () => {
    const upstream = manualStream()
    const events: string[] = []
    const pumping = pumpEvents(upstream.stream, (data) => events.push(data) > 0)
    upstream.push('data: before\n\ndata: ')
    const piece = 'x'.repeat(64 * 1024)
    // Bounded: a few pieces past the limit at most, well before memory matters.
    for (let sent = 0; sent <= MAX_EVENT_CHARS + 2 * piece.length; sent += piece.length) upstream.push(piece)
    await expect(pumping).rejects.toMatchObject({ status: 502, code: 'upstream_event_too_large' })
    expect(events).toEqual(['before'])
    await upstream.cancelled
  })

  it('joins an event split mid-line across reads', async () => {
    const { events } = await collect(streamOf('data: {"a"', ':1}\n', '\ndata: [DO', 'NE]\n\n'))
    expect(events).toEqual(['{"a":1}', '[DONE]'])
  })

  it('accepts CRLF line ends, including a CR and LF split across reads', async () => {
    const { events } = await collect(streamOf('data: one\r', '\n\r\ndata: two\r\n\r\n'))
    expect(events).toEqual(['one', 'two'])
  })

  it('accepts bare CR line ends', async () => {
    const { events } = await collect(streamOf('data: one\r\rdata: two\r\r'))
    expect(events).toEqual(['one', 'two'])
  })

  it('keeps a multibyte character that is split across reads', async () => {
    const whole = bytes('data: {"t":"é—🙂"}\n\n')
    // Cut inside "é" (2 bytes) and inside "🙂" (4 bytes).
    const firstCut = whole.indexOf(0xc3) + 1
    const secondCut = whole.indexOf(0xf0) + 2
    const { events } = await collect(streamOf(whole.slice(0, firstCut), whole.slice(firstCut, secondCut), whole.slice(secondCut)))
    expect(events).toEqual(['{"t":"é—🙂"}'])
  })

  it('drops a byte order mark at the start of the stream', async () => {
    const { events } = await collect(streamOf(new Uint8Array([0xef, 0xbb]), new Uint8Array([0xbf]), 'data: x\n\n'))
    expect(events).toEqual(['x'])
  })

  it('does not relay comments, event names or ids as data', async () => {
    const { events } = await collect(streamOf(': ping\n\nevent: note\nid: 7\ndata: x\n\n: later\n\n'))
    expect(events).toEqual(['x'])
  })

  it('joins multi-line data with a line feed', async () => {
    const { events } = await collect(streamOf('data: a\ndata: b\n\n'))
    expect(events).toEqual(['a\nb'])
  })

  it('stops at the event the handler ends on and ignores what follows', async () => {
    const { events, end } = await collect(streamOf('data: a\n\ndata: [DONE]\n\ndata: after\n\n'))
    expect(events).toEqual(['a', '[DONE]'])
    expect(end).toBe('ended')
  })

  it('reports eof when the upstream closes before the handler ended, dropping an unterminated event', async () => {
    const { events, end } = await collect(streamOf('data: a\n\ndata: half'))
    expect(events).toEqual(['a'])
    expect(end).toBe('eof')
  })

  it('hands each event over as soon as its bytes arrive, not when the stream ends', async () => {
    const upstream = manualStream()
    const seen: string[] = []
    const { promise: first, resolve } = Promise.withResolvers<void>()
    const pumping = pumpEvents(upstream.stream, (data) => {
      seen.push(data)
      resolve()
      return data !== '[DONE]'
    })
    upstream.push('data: first\n\n')
    await first
    expect(seen).toEqual(['first'])
    upstream.push('data: [DONE]\n\n')
    expect(await pumping).toBe('ended')
  })

  it('rejects when the upstream fails mid-stream', async () => {
    const upstream = manualStream()
    const pumping = pumpEvents(upstream.stream, () => true)
    upstream.push('data: a\n\n')
    upstream.fail(new Error('connection reset'))
    await expect(pumping).rejects.toThrow('connection reset')
  })

  it('reads a finished response to its end instead of cancelling it, so the connection can be reused', async () => {
    const upstream = manualStream()
    const pumping = pumpEvents(upstream.stream, () => false)
    upstream.push('data: [DONE]\n\n')
    expect(await pumping).toBe('ended')
    upstream.close()
    const outcome = await Promise.race([
      upstream.cancelled.then(() => 'cancelled'),
      new Promise((r) => setTimeout(() => r('not cancelled'), 50)),
    ])
    expect(outcome).toBe('not cancelled')
  })

  it('cancels a finished response whose backend keeps the connection open', async () => {
    const upstream = manualStream()
    const pumping = pumpEvents(upstream.stream, () => false)
    upstream.push('data: [DONE]\n\n')
    await pumping
    await expect(upstream.cancelled).resolves.toBeUndefined()
  })

  it('yields the same events however the bytes are split (property)', async () => {
    const payloads = fc.array(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }), { minLength: 1, maxLength: 6 })
    await fc.assert(
      fc.asyncProperty(payloads, fc.array(fc.nat(), { maxLength: 8 }), fc.constantFrom('\n', '\r\n', '\r'), async (texts, cuts, eol) => {
        const clean = texts.map((text) => text.replace(/[\r\n]/g, ' '))
        const wire = bytes(clean.map((text) => `data: ${text}${eol}${eol}`).join(''))
        const points = [...new Set(cuts.map((cut) => cut % (wire.length + 1)))].sort((a, b) => a - b)
        const bounds = [0, ...points, wire.length]
        const pieces = bounds.slice(1).map((end, i) => wire.slice(bounds[i], end))
        const { events } = await collect(streamOf(...pieces))
        // SSE removes only the one space after "data:", so a payload's own leading space survives.
        expect(events).toEqual(clean)
      }),
      { numRuns: 200 },
    )
  })
})
