import { describe, expect, it } from 'vitest'
import { MessageCollector } from '../../src/messages/collect.ts'
import type { MessageSettings } from '../../src/messages/output.ts'
import { ApiError } from '../../src/errors.ts'
import { PROMPT_TOKENS, dataChunks, generation } from './chunks.ts'

const settings = (showThinking: boolean | 'omitted'): MessageSettings => ({
  id: 'msg_0123',
  model: 'deepseek-r1-distill-qwen-1.5b',
  thinking: showThinking === 'omitted' ? 'omitted' : showThinking ? 'shown' : 'hidden',
})

function collect(showThinking: boolean | 'omitted', payloads: string[]) {
  const collector = new MessageCollector(settings(showThinking))
  for (const chunk of dataChunks(payloads)) collector.chunk(chunk)
  return collector.answer()
}

describe('MessageCollector', () => {
  it('answers one message: the thinking block first when thinking is enabled, then the text', () => {
    const message = collect(true, generation(['Let me ', 'think.'], ['Forty', '-two.']))
    expect(message).toEqual({
      id: 'msg_0123',
      type: 'message',
      role: 'assistant',
      model: 'deepseek-r1-distill-qwen-1.5b',
      content: [
        { type: 'thinking', thinking: 'Let me think.', signature: expect.stringMatching(/^[0-9a-f]{32}$/) as string },
        { type: 'text', text: 'Forty-two.' },
      ],
      stop_reason: 'end_turn',
      stop_sequence: null,
      usage: { input_tokens: PROMPT_TOKENS, output_tokens: 4, cache_creation_input_tokens: null, cache_read_input_tokens: null },
    })
  })

  it('shows no thinking block when thinking was not asked for: content[0] is the text', () => {
    const message = collect(false, generation(['Hmm.'], ['Hi!']))
    expect(message.content).toEqual([{ type: 'text', text: 'Hi!' }])
  })

  it('answers a thinking block without its text, with its signature, when the display is omitted', () => {
    const message = collect('omitted', generation(['Secret.'], ['Hi!']))
    expect(message.content).toEqual([
      { type: 'thinking', thinking: '', signature: expect.stringMatching(/^[0-9a-f]{32}$/) as string },
      { type: 'text', text: 'Hi!' },
    ])
  })

  it('maps finish_reason length to max_tokens, with an empty text block when cut inside the reasoning', () => {
    const message = collect(true, generation(['Long ', 'thought'], [], { finish_reason: 'length' }))
    expect(message.stop_reason).toBe('max_tokens')
    expect(message.content.map((block) => block.type)).toEqual(['thinking', 'text'])
    expect(message.content[1]).toEqual({ type: 'text', text: '' })
  })

  it("maps a matched stop string (vLLM's stop_reason) to stop_sequence", () => {
    const message = collect(false, generation([], ['One, two'], { finish_reason: 'stop', stop_reason: 'three' }))
    expect(message.stop_reason).toBe('stop_sequence')
    expect(message.stop_sequence).toBe('three')
  })

  it('maps a stop token id to end_turn', () => {
    const message = collect(false, generation([], ['Done'], { finish_reason: 'stop', stop_reason: 151643 }))
    expect(message).toMatchObject({ stop_reason: 'end_turn', stop_sequence: null })
  })

  it('forgets a replaced attempt on restart', () => {
    const collector = new MessageCollector(settings(false))
    for (const chunk of dataChunks(generation([], ['first']).slice(0, 2))) collector.chunk(chunk)
    collector.restart()
    for (const chunk of dataChunks(generation([], ['second']))) collector.chunk(chunk)
    expect(collector.answer().content).toEqual([{ type: 'text', text: 'second' }])
  })

  it('is a 502 when the backend sent no chunk', () => {
    const collector = new MessageCollector(settings(false))
    expect(() => collector.answer()).toThrow(ApiError)
  })
})
