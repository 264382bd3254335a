// Reasoning reaches clients as `reasoning_content` whatever the backend's vLLM era or flags: the
// same prompt (the emulator's text is deterministic) through backends that name the field
// differently, or send it inside `content` for want of a reasoning parser, gives clients the same
// deltas' text and the same `stream: false` message.
import { env } from 'cloudflare:workers'
import { afterAll, beforeEach, describe, expect, it } from 'vitest'
import { HEALTH_KEY } from '../../src/fleet/records.ts'
import { backendRecord, callIn, clearFleet, fleetEnv, fleetUrls, writeFleet } from '../support/fleet.ts'
import { TEST_SECRET } from '../support/keys.ts'
import { chatBody } from '../support/worker.ts'
import { dataEvents, frames } from '../support/sse.ts'

const PROMPT = '[emulator ttft_ms=2 itl_ms=1 reasoning_tokens=9 content_tokens=7] Why is the sky blue?'

const ERAS = [
  ['reasoning_content (v0.7.2 to late 2025)', { reasoningParser: 'deepseek_r1', reasoningField: 'reasoning_content' }, 'deepseek_r1'],
  ['reasoning with a reasoning_content mirror (late 2025)', { reasoningParser: 'deepseek_r1', reasoningField: 'both' }, 'deepseek_r1'],
  ['reasoning only (2026)', { reasoningParser: 'deepseek_r1', reasoningField: 'reasoning' }, 'deepseek_r1'],
  [
    'reasoning with "reasoning_content": null on every delta (some 2026 builds)',
    { reasoningParser: 'deepseek_r1', reasoningField: 'reasoning_null' },
    'deepseek_r1',
  ],
  ['no reasoning parser (reasoning and </think> inside content)', { reasoningParser: null }, 'none'],
] as const

async function configure(options: Record<string, unknown>): Promise<void> {
  const response = await fetch(`${fleetUrls[0]}/emulator/config`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(options),
  })
  expect(response.ok).toBe(true)
}

async function chat(stream: boolean) {
  const init = {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${TEST_SECRET}` },
    body: JSON.stringify(chatBody(PROMPT, { stream })),
  }
  const { response, settled } = await callIn(fleetEnv(), '/v1/chat/completions', init)
  const body = await response.text()
  await settled()
  expect(response.status).toBe(200)
  return body
}

/** The deltas a streaming client got, and their reasoning and answer text joined. */
async function streamed() {
  const chunks = dataEvents(frames(await chat(true))) as { choices: { delta: Record<string, unknown> }[] }[]
  const deltas = chunks.map((chunk) => chunk.choices[0]?.delta ?? {})
  const join = (field: string) => deltas.map((delta) => (typeof delta[field] === 'string' ? delta[field] : '')).join('')
  return { deltas, reasoning: join('reasoning_content'), content: join('content') }
}

async function collected() {
  const body = JSON.parse(await chat(false)) as { choices: { message: Record<string, unknown> }[] }
  return body.choices[0]?.message
}

let expected: { reasoning: string; content: string }

beforeEach(async () => {
  await clearFleet()
  await env.FLEET.delete(HEALTH_KEY)
  await fetch(`${fleetUrls[0]}/emulator/reset`, { method: 'POST' })
  await configure({ fault: 'none', reasoningParser: 'deepseek_r1', reasoningField: 'reasoning_content' })
  await writeFleet([backendRecord(0)])
  expected ??= await streamed()
  expect(expected.reasoning.length).toBeGreaterThan(0)
  expect(expected.content.length).toBeGreaterThan(0)
})

// The fleet emulators serve other files too: leave this one as they expect it.
afterAll(() => configure({ reasoningParser: 'deepseek_r1', reasoningField: 'reasoning_content' }))

describe('reasoning reaches clients as reasoning_content whatever the backend sends', () => {
  it.each(ERAS)('streams %s as reasoning_content deltas with the same text', async (_, options, parser) => {
    await configure(options)
    await writeFleet([backendRecord(0, { reasoningParser: parser })])
    const got = await streamed()
    expect(got.reasoning).toBe(expected.reasoning)
    expect(got.content).toBe(expected.content)
    for (const delta of got.deltas) {
      expect(Object.keys(delta).every((key) => ['role', 'content', 'reasoning_content'].includes(key))).toBe(true)
      expect(delta.reasoning_content).not.toBeNull()
    }
  })

  it.each(ERAS)('collects %s into message.reasoning_content for stream: false', async (_, options, parser) => {
    await configure(options)
    await writeFleet([backendRecord(0, { reasoningParser: parser })])
    expect(await collected()).toEqual({ role: 'assistant', content: expected.content, reasoning_content: expected.reasoning })
  })
})
