// How one stream's events become a request's timing or its error kind, event by event, without a
// server: which chunk is the first token under each vLLM reasoning field, where the decode span
// ends, and each way a stream can fail.
import { describe, expect, it } from 'vitest'
import { StreamTracker, type RequestOutcome } from '../../scripts/loadtest/client.ts'

const chunk = (delta: Record<string, unknown>, finish: string | null = null) =>
  JSON.stringify({
    id: 'chatcmpl-1',
    object: 'chat.completion.chunk',
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  })
const ROLE = chunk({ role: 'assistant', content: '' })
const usage = (completion: number) =>
  JSON.stringify({
    id: 'chatcmpl-1',
    choices: [],
    usage: { prompt_tokens: 9, completion_tokens: completion, total_tokens: 9 + completion },
  })

/** Feeds [data, arrival ms] pairs to a tracker whose request was sent at 100. */
function track(events: [string, number][]): RequestOutcome {
  const tracker = new StreamTracker(100)
  for (const [data, at] of events) tracker.onData(data, at)
  return tracker.outcome()
}

describe('StreamTracker', () => {
  it.each([
    ['reasoning_content (vLLM 0.7 to late 2025)', { reasoning_content: 'Okay' }],
    ['reasoning with a null reasoning_content (late 2025)', { reasoning: 'Okay', reasoning_content: null }],
    ['reasoning (2026 builds)', { reasoning: 'Okay' }],
    ['content (no reasoning parser)', { content: '<think>' }],
  ])('times the first token from %s, not from the role chunk', (_name, delta) => {
    const outcome = track([
      [ROLE, 110],
      [chunk(delta), 140],
      [chunk({ content: ' fine' }), 150],
      ['[DONE]', 151],
    ])
    expect(outcome).toMatchObject({ ok: true, ttftMs: 40, itlMs: [10], completionTokens: 2 })
  })

  it('ends the decode span at the finish chunk and counts tokens from usage', () => {
    // 12 tokens: 10 with text, </think> (no chunk) and EOS (the finish chunk), one every 10 ms.
    const events: [string, number][] = [[ROLE, 105]]
    for (let index = 0; index < 10; index++) events.push([chunk({ reasoning_content: 't' }), 200 + index * 10 + (index >= 6 ? 10 : 0)])
    events.push([chunk({ content: '' }, 'stop'), 310], [usage(12), 310], ['[DONE]', 310])
    const outcome = track(events)
    expect(outcome).toMatchObject({ ok: true, ttftMs: 100, completionTokens: 12 })
    if (!outcome.ok) return
    expect(outcome.tokensPerSecond).toBeCloseTo(11 / 0.11, 9)
    expect(outcome.itlMs).toEqual([10, 10, 10, 10, 10, 20, 10, 10, 10])
  })

  it('counts the chunks with text when the stream reports no usage', () => {
    const outcome = track([
      [chunk({ content: 'a' }), 120],
      [chunk({ content: 'b' }), 130],
      [chunk({ content: 'c' }), 140],
      ['[DONE]', 141],
    ])
    expect(outcome).toMatchObject({ ok: true, completionTokens: 3, tokensPerSecond: 100 })
  })

  it('gives no decode rate for a single token', () => {
    expect(
      track([
        [chunk({ content: 'a' }), 120],
        [chunk({}, 'length'), 120],
        ['[DONE]', 121],
      ]),
    ).toMatchObject({ ok: true, tokensPerSecond: null })
  })

  it.each<[string, [string, number][], string]>([
    ['a stream that ends without [DONE]', [[chunk({ content: 'a' }), 120]], 'incomplete'],
    [
      'an {"error": ...} event, even after tokens',
      [
        [chunk({ content: 'a' }), 120],
        ['{"error": {"message": "EngineCore died", "code": 500}}', 130],
        ['[DONE]', 130],
      ],
      'stream_error',
    ],
    [
      'a legacy {"object":"error"} event',
      [
        ['{"object":"error","message":"boom","code":500}', 120],
        ['[DONE]', 120],
      ],
      'stream_error',
    ],
    [
      'an event that is not JSON',
      [
        [chunk({ content: 'a' }), 120],
        ['{"id":"chatcmpl-', 121],
        ['[DONE]', 122],
      ],
      'malformed',
    ],
    [
      'a finished stream without any token',
      [
        [ROLE, 120],
        [chunk({ content: '' }, 'stop'), 121],
        ['[DONE]', 122],
      ],
      'empty',
    ],
  ])('fails %s', (_name, events, kind) => {
    expect(track(events)).toMatchObject({ ok: false, kind })
  })

  it('keeps the error event message and ignores events after the end', () => {
    const tracker = new StreamTracker(0)
    tracker.onData('{"error": {"message": "EngineCore died", "type": "InternalServerError", "code": 500}}', 5)
    tracker.onData(chunk({ content: 'late' }), 6)
    expect(tracker.ended).toBe(true)
    expect(tracker.outcome()).toEqual({ ok: false, kind: 'stream_error', message: 'EngineCore died' })
  })
})
