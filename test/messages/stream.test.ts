import { describe, expect, it } from 'vitest'
import { MessageEventStream } from '../../src/messages/stream.ts'
import type { MessageSettings } from '../../src/messages/output.ts'
import { UpstreamCall } from '../../src/dispatch/upstream-call.ts'
import { relaySse, type RelaySource } from '../../src/relay/stream.ts'
import { streamOf } from '../support/streams.ts'
import { readAll } from '../support/sse.ts'
import { PROMPT_TOKENS, generation, sse } from './chunks.ts'

const settings = (showThinking: boolean | 'omitted'): MessageSettings => ({
  id: 'msg_0123',
  model: 'deepseek-r1-distill-qwen-1.5b',
  thinking: showThinking === 'omitted' ? 'omitted' : showThinking ? 'shown' : 'hidden',
})
const SIGNATURE = /^[0-9a-f]{32}$/

function source(text: string): RelaySource {
  return { upstream: streamOf(text), call: new UpstreamCall(undefined, { firstEventMs: 5_000, idleMs: 5_000 }) }
}

/** Relays upstream SSE through the Messages sink; `then` are the sources failover moves to. */
async function relay(
  showThinking: boolean | 'omitted',
  first: string,
  ...then: string[]
): Promise<{ frames: string[]; events: Record<string, unknown>[] }> {
  const next =
    then.length > 0
      ? async () => {
          const text = then.shift()
          return text === undefined ? null : source(text)
        }
      : null
  const readable = relaySse(Promise.resolve({ first: source(first), next }), {
    forwardUsage: false,
    forwardChunkUsage: false,
    keepAliveMs: 10_000,
    sink: (options) => new MessageEventStream(settings(showThinking), options),
  })
  const frames = (await readAll(readable)).split('\n\n').filter((frame) => frame !== '')
  const events = frames.map((frame) => {
    const [eventLine = '', dataLine = ''] = frame.split('\n')
    const event = JSON.parse(dataLine.slice('data: '.length)) as Record<string, unknown>
    expect(eventLine).toBe(`event: ${String(event.type)}`)
    return event
  })
  return { frames, events }
}

const messageStart = {
  type: 'message_start',
  message: {
    id: 'msg_0123',
    type: 'message',
    role: 'assistant',
    model: 'deepseek-r1-distill-qwen-1.5b',
    content: [],
    stop_reason: null,
    stop_sequence: null,
    usage: { input_tokens: PROMPT_TOKENS, output_tokens: 0, cache_creation_input_tokens: null, cache_read_input_tokens: null },
  },
}

describe('MessageEventStream', () => {
  it("sends Anthropic's sequence with thinking enabled: thinking deltas, a signature_delta before its stop, then text", async () => {
    const { events } = await relay(true, sse(generation(['Let me ', 'think.'], ['Forty', '-two.'])))
    expect(events).toEqual([
      messageStart,
      { type: 'ping' },
      { type: 'content_block_start', index: 0, content_block: { type: 'thinking', thinking: '', signature: '' } },
      { type: 'content_block_delta', index: 0, delta: { type: 'thinking_delta', thinking: 'Let me ' } },
      { type: 'content_block_delta', index: 0, delta: { type: 'thinking_delta', thinking: 'think.' } },
      { type: 'content_block_delta', index: 0, delta: { type: 'signature_delta', signature: expect.stringMatching(SIGNATURE) as string } },
      { type: 'content_block_stop', index: 0 },
      { type: 'content_block_start', index: 1, content_block: { type: 'text', text: '' } },
      { type: 'content_block_delta', index: 1, delta: { type: 'text_delta', text: 'Forty' } },
      { type: 'content_block_delta', index: 1, delta: { type: 'text_delta', text: '-two.' } },
      { type: 'content_block_stop', index: 1 },
      {
        type: 'message_delta',
        delta: { stop_reason: 'end_turn', stop_sequence: null },
        usage: { input_tokens: PROMPT_TOKENS, output_tokens: 4 },
      },
      { type: 'message_stop' },
    ])
  })

  it('sends only the text block when thinking was not asked for', async () => {
    const { events } = await relay(false, sse(generation(['Hmm.'], ['Hi!'])))
    expect(events).toEqual([
      messageStart,
      { type: 'ping' },
      { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
      { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Hi!' } },
      { type: 'content_block_stop', index: 0 },
      {
        type: 'message_delta',
        delta: { stop_reason: 'end_turn', stop_sequence: null },
        usage: { input_tokens: PROMPT_TOKENS, output_tokens: 2 },
      },
      { type: 'message_stop' },
    ])
  })

  it('sends the thinking block with only its signature_delta when the display is omitted', async () => {
    const { events } = await relay('omitted', sse(generation(['Secret ', 'thought.'], ['Hi!'])))
    expect(events.slice(2, 6)).toEqual([
      { type: 'content_block_start', index: 0, content_block: { type: 'thinking', thinking: '', signature: '' } },
      { type: 'content_block_delta', index: 0, delta: { type: 'signature_delta', signature: expect.stringMatching(SIGNATURE) as string } },
      { type: 'content_block_stop', index: 0 },
      { type: 'content_block_start', index: 1, content_block: { type: 'text', text: '' } },
    ])
    expect(JSON.stringify(events)).not.toContain('Secret')
  })

  it('ends a generation cut inside the reasoning with an empty text block and max_tokens', async () => {
    const { events } = await relay(true, sse(generation(['Long '], [], { finish_reason: 'length' })))
    expect(events.slice(2).map((event) => event.type)).toEqual([
      'content_block_start',
      'content_block_delta',
      'content_block_delta',
      'content_block_stop',
      'content_block_start',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ])
    expect(events.at(-2)).toMatchObject({ delta: { stop_reason: 'max_tokens', stop_sequence: null } })
  })

  it('reports a matched stop string as stop_sequence', async () => {
    const { events } = await relay(false, sse(generation([], ['One, two'], { finish_reason: 'stop', stop_reason: 'three' })))
    expect(events.at(-2)).toMatchObject({ type: 'message_delta', delta: { stop_reason: 'stop_sequence', stop_sequence: 'three' } })
  })

  it("ends with Anthropic's error event (no message_stop) when the backend fails after the first token", async () => {
    const payloads = generation([], ['Hel', 'lo']).slice(0, 3)
    const error = '{"error": {"message": "engine died", "type": "InternalServerError", "param": null, "code": 500}}'
    const { events } = await relay(false, sse([...payloads, error, '[DONE]']))
    expect(events.map((event) => event.type)).toEqual([
      'message_start',
      'ping',
      'content_block_start',
      'content_block_delta',
      'content_block_delta',
      'error',
    ])
    expect(events.at(-1)).toEqual({ type: 'error', error: { type: 'api_error', message: 'engine died' } })
  })

  it('fails over while only message_start and hidden thinking went out, without a second message_start', async () => {
    const payloads = generation(['secret thought'], ['never']).slice(0, 2)
    const error = '{"error": {"message": "engine died", "type": "InternalServerError", "param": null, "code": 500}}'
    const { events } = await relay(false, sse([...payloads, error]), sse(generation([], ['From the second.'])))
    expect(events.filter((event) => event.type === 'message_start')).toHaveLength(1)
    const texts = events.flatMap((event) => {
      const delta = event.delta as { text?: string } | undefined
      return delta?.text ? [delta.text] : []
    })
    expect(texts).toEqual(['From the second.'])
    expect(events.at(-1)).toEqual({ type: 'message_stop' })
  })
})
