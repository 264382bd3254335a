// Stop strings and stop token ids as vLLM v0.11.0 applies them: the detokenizer cuts the text
// before the match and holds back len - 1 characters while streaming (v1/engine/detokenizer.py
// check_stop_strings, get_next_output_text); stop_token_ids end with stop_reason the id
// (v1/core/sched/utils.py check_stop).

import { describe, expect, it } from 'vitest'
import type { Emulator } from '../../gpu-backend/emulator/server.ts'
import { THINK_END_TOKEN_ID, tokenIdOf } from '../../gpu-backend/emulator/text.ts'
import { chatBody, emulatorV0110, MODEL, post } from './helpers.ts'
import { payloads } from '../support/sse.ts'

type Choice = { index: number; delta?: Record<string, string | null>; text?: string; finish_reason: string | null; stop_reason: unknown }
type Answer = { choices: (Choice & { message: { content: string | null; reasoning_content: string | null } })[] }

async function answer(emulator: Emulator, body: unknown): Promise<Answer> {
  return (await (await post(emulator, '/v1/chat/completions', body)).json()) as Answer
}

async function streamed(emulator: Emulator, path: string, body: unknown): Promise<Choice[]> {
  const chunks = payloads(await (await post(emulator, path, { ...(body as object), stream: true })).text()) as { choices: Choice[] }[]
  return chunks.flatMap((chunk) => chunk.choices)
}

/** Without the reasoning parser the whole output is content, so a stop string can come from it. */
const plain = { reasoningParser: null }
const BODY = chatBody('reasoning_tokens=6 content_tokens=10')

describe('stop strings (vLLM v0.11.0 detokenizer)', () => {
  it('cuts the text before the matched stop string and reports it as stop_reason', async () => {
    const emulator = await emulatorV0110(plain)
    const full = (await answer(emulator, BODY)).choices[0]?.message.content ?? ''
    const stop = full.slice(full.indexOf('</think>') + 12, full.indexOf('</think>') + 16)
    const cut = await answer(emulator, { ...BODY, stop: [stop, 'never appears here'] })
    expect(cut.choices[0]).toMatchObject({
      finish_reason: 'stop',
      stop_reason: stop,
      message: { content: full.slice(0, full.indexOf(stop)) },
    })
    const chunks = await streamed(emulator, '/v1/chat/completions', { ...BODY, stop })
    expect(chunks.map((choice) => choice.delta?.content ?? '').join('')).toBe(full.slice(0, full.indexOf(stop)))
    expect(chunks.at(-1)).toMatchObject({ finish_reason: 'stop', stop_reason: stop })
  })

  it('keeps the stop string with include_stop_str_in_output', async () => {
    const emulator = await emulatorV0110(plain)
    const full = (await answer(emulator, BODY)).choices[0]?.message.content ?? ''
    const stop = full.slice(full.indexOf('</think>') + 12, full.indexOf('</think>') + 16)
    const kept = await answer(emulator, { ...BODY, stop, include_stop_str_in_output: true })
    expect(kept.choices[0]?.message.content).toBe(full.slice(0, full.indexOf(stop) + stop.length))
  })

  it('holds back len(stop) - 1 characters of each streamed delta until the end', async () => {
    const emulator = await emulatorV0110(plain)
    const chunks = await streamed(emulator, '/v1/chat/completions', { ...BODY, stop: 'no such text' })
    const first = chunks[1]?.delta?.content ?? ''
    const firstAlone = (await streamed(emulator, '/v1/chat/completions', BODY))[1]?.delta?.content ?? ''
    expect(first).toBe(firstAlone.slice(0, Math.max(0, firstAlone.length - 11)))
    const all = (await answer(emulator, BODY)).choices[0]?.message.content
    expect(chunks.map((choice) => choice.delta?.content ?? '').join('')).toBe(all)
  })

  it('drops held-back text at </think> under the reasoning parser, as v0.11.0 does', async () => {
    // The `</think>` step's delta is the held-back reasoning tail plus "</think" minus what is still
    // held; a lone end token gives no delta (basic_parsers.py), so that text never reaches the client.
    const emulator = await emulatorV0110()
    const full = (await answer(emulator, BODY)).choices[0]?.message
    const chunks = await streamed(emulator, '/v1/chat/completions', { ...BODY, stop: 'zz' })
    const reasoning = chunks.map((choice) => choice.delta?.reasoning_content ?? '').join('')
    const content = chunks.map((choice) => choice.delta?.content ?? '').join('')
    expect(reasoning).toBe(full?.reasoning_content?.slice(0, -1))
    expect(content).toBe(`>${full?.content ?? ''}`)
  })
})

describe('stop_token_ids (vLLM v0.11.0 check_stop)', () => {
  it('ends at a stop token with stop_reason the id, the token itself left out of the text', async () => {
    const emulator = await emulatorV0110()
    const stopped = await answer(emulator, { ...BODY, stop_token_ids: [THINK_END_TOKEN_ID] })
    const full = await answer(emulator, BODY)
    expect(stopped.choices[0]).toMatchObject({
      finish_reason: 'stop',
      stop_reason: THINK_END_TOKEN_ID,
      message: { content: null, reasoning_content: full.choices[0]?.message.reasoning_content },
    })
    const chunks = await streamed(emulator, '/v1/chat/completions', { ...BODY, stop_token_ids: [THINK_END_TOKEN_ID] })
    expect(chunks.at(-1)).toMatchObject({ delta: {}, finish_reason: 'stop', stop_reason: THINK_END_TOKEN_ID })
  })

  it('stops a completion at a word token of the emulated vocabulary', async () => {
    const emulator = await emulatorV0110()
    const body = { model: MODEL, prompt: 'Once upon a time', max_tokens: 12 }
    const full = (await streamed(emulator, '/v1/completions', body)).map((choice) => choice.text ?? '')
    const at = full.findIndex((word, index) => index >= 2 && word !== '' && !full.slice(0, index).includes(word))
    const word = full[at] ?? ''
    const chunks = await streamed(emulator, '/v1/completions', { ...body, stop_token_ids: [tokenIdOf(word)] })
    expect(chunks.map((choice) => choice.text).join('')).toBe(full.slice(0, at).join(''))
    expect(chunks.at(-1)).toMatchObject({ text: '', finish_reason: 'stop', stop_reason: tokenIdOf(word) })
  })
})
