// A fleet in the middle of an upgrade (issue 30): one backend still on vLLM v0.11.0, one already on
// v0.20.2 (the fleet emulators switched at runtime, POST /emulator/config {vllmVersion}). Whichever
// release serves a request, the client gets the same complete answer, field for field: chat's
// reasoning_content (v0.20.2 sends `reasoning`), Messages' thinking blocks, the Responses reasoning
// item; and a request that one release fails (each has its own dead-engine error) moves to the other.
// Which backend served a request is read from the emulators' request logs (a marker in each prompt)
// and their stats.
import { env } from 'cloudflare:workers'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { clearFleetCache } from '../../src/fleet/registry.ts'
import { HEALTH_KEY } from '../../src/fleet/records.ts'
import { TEST_SECRET } from '../support/keys.ts'
import { backendRecord, callIn, clearFleet, fleetEnv, fleetUrls, prepareFleet, writeFleet, type TestEnv } from '../support/fleet.ts'
import { frames } from '../support/sse.ts'
import { MODEL } from '../support/worker.ts'

type Version = '0.11.0' | '0.20.2'
/** gpu-a (fleet emulator 0) stays on the old release, gpu-b (emulator 1) runs the new one. */
const OLD = 0
const NEW = 1
const SHORT = '[emulator ttft_ms=5 itl_ms=1 reasoning_tokens=3 content_tokens=3]'

/** The request kinds a client sends: chat streamed and not, Responses streamed and not, Messages streamed and not. */
const KINDS = ['chat stream', 'chat', 'responses stream', 'responses', 'messages stream', 'messages'] as const
type Kind = (typeof KINDS)[number]

async function configure(index: number, patch: Record<string, unknown>): Promise<void> {
  const response = await fetch(`${fleetUrls[index]}/emulator/config`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(patch),
  })
  if (!response.ok) throw new Error(`emulator config: ${response.status}`)
}

/** Fleet emulator 0 on v0.11.0, 1 on v0.20.2, counters reset, `faults` set (default none). */
async function mixedFleet(faults: Partial<Record<0 | 1, string>> = {}): Promise<void> {
  await prepareFleet(faults)
  await configure(OLD, { vllmVersion: '0.11.0' })
  await configure(NEW, { vllmVersion: '0.20.2' })
}

/** A new fleet record, seen by the next request (the test cache lives 1 ms). */
async function useFleet(...backends: Parameters<typeof writeFleet>[0]): Promise<void> {
  await writeFleet(backends)
  clearFleetCache(env.FLEET)
  await new Promise((resolve) => setTimeout(resolve, 5))
}

let serial = 0

interface Answer {
  kind: Kind
  marker: string
  status: number
  body: string
}

/** One request of `kind`, its prompt marked so the backend that generated it can be found. */
async function send(testEnv: TestEnv, kind: Kind): Promise<Answer> {
  const marker = `mixed-${Date.now().toString(36)}-${serial++}`
  const text = `${SHORT} ${marker} What is 7 * 6?`
  const stream = kind.endsWith('stream')
  const json = { 'content-type': 'application/json' }
  let path: string
  let init: RequestInit
  if (kind.startsWith('messages')) {
    path = '/v1/messages'
    const body = { model: MODEL, max_tokens: 1024, stream, thinking: { type: 'adaptive' }, messages: [{ role: 'user', content: text }] }
    init = { method: 'POST', headers: { ...json, 'x-api-key': TEST_SECRET }, body: JSON.stringify(body) }
  } else if (kind.startsWith('responses')) {
    path = '/v1/responses'
    init = {
      method: 'POST',
      headers: { ...json, authorization: `Bearer ${TEST_SECRET}` },
      body: JSON.stringify({ model: MODEL, input: text, stream }),
    }
  } else {
    path = '/v1/chat/completions'
    const body = { model: MODEL, stream, messages: [{ role: 'user', content: text }] }
    init = { method: 'POST', headers: { ...json, authorization: `Bearer ${TEST_SECRET}` }, body: JSON.stringify(body) }
  }
  const { response, settled } = await callIn(testEnv, path, init)
  const body = await response.text()
  await settled()
  return { kind, marker, status: response.status, body }
}

/** Values kept as they are in a shape: the fields that say what a thing is, not what it holds. */
const KEPT = new Set(['type', 'object', 'role', 'finish_reason', 'stop_reason', 'status', 'event'])

/**
 * The shape of a JSON value: its keys, recursively, and the kind of each value (a string's text, a
 * number's value, an id are left out, except the fields of KEPT); runs of equal array items count once.
 */
function shapeOf(value: unknown, key = ''): unknown {
  if (value === null) return null
  if (Array.isArray(value)) return collapse(value.map((item) => shapeOf(item)))
  if (typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) => a.localeCompare(b))
    return Object.fromEntries(entries.map(([name, field]) => [name, shapeOf(field, name)]))
  }
  if (typeof value === 'string') return KEPT.has(key) ? value : 'string'
  return typeof value
}

/** Runs of equal items once: a stream's shape does not depend on how many tokens each part had. */
function collapse(items: unknown[]): unknown[] {
  const out: unknown[] = []
  for (const item of items) if (JSON.stringify(item) !== JSON.stringify(out.at(-1))) out.push(item)
  return out
}

/** A streamed answer's shape: each event's name and its data's shape, runs of equal events once. */
function streamShape(body: string): unknown[] {
  return collapse(
    frames(body).map((frame) => {
      const event = /^event: (.+)$/m.exec(frame)?.[1] ?? null
      const data = /^data: (.*)$/m.exec(frame)?.[1] ?? ''
      return { event, data: data === '[DONE]' ? '[DONE]' : shapeOf(JSON.parse(data)) }
    }),
  )
}

function shapeOfAnswer(answer: Answer): unknown {
  return answer.kind.endsWith('stream') ? streamShape(answer.body) : shapeOf(JSON.parse(answer.body))
}

/** The data of each frame of a stream, parsed ([DONE] and comments left out). */
function streamData(body: string): Record<string, unknown>[] {
  return frames(body)
    .map((frame) => /^data: (.*)$/m.exec(frame)?.[1])
    .filter((data): data is string => data !== undefined && data !== '[DONE]')
    .map((data) => JSON.parse(data) as Record<string, unknown>)
}

/**
 * Checks an answer is whole: its generation's reasoning and answer text, and its end. Chat carries
 * the reasoning as reasoning_content (never vLLM v0.20.2's `reasoning`), Messages as a thinking
 * block, Responses as a reasoning item.
 */
function expectComplete(answer: Answer): void {
  expect(answer.status, `${answer.kind}: ${answer.body.slice(0, 300)}`).toBe(200)
  expect(answer.body).not.toMatch(/"error":\{|EngineCore/)
  const data = answer.kind.endsWith('stream') ? streamData(answer.body) : [JSON.parse(answer.body) as Record<string, unknown>]
  const text = JSON.stringify(data)
  switch (answer.kind) {
    case 'chat stream':
      expect(answer.body).not.toContain('"reasoning":')
      expect(frames(answer.body).at(-1)).toBe('data: [DONE]')
      expect(text).toMatch(/"reasoning_content":"[^"]+"/)
      expect(text).toMatch(/"content":"[^"]+"/)
      expect(text).toContain('"finish_reason":"stop"')
      break
    case 'chat':
      expect(answer.body).not.toContain('"reasoning":')
      expect(data[0]).toMatchObject({
        object: 'chat.completion',
        choices: [
          { finish_reason: 'stop', message: { reasoning_content: expect.stringMatching(/\S/), content: expect.stringMatching(/\S/) } },
        ],
      })
      break
    case 'messages stream':
      expect(data.map((event) => event.type).at(-1)).toBe('message_stop')
      expect(text).toMatch(/"thinking_delta","thinking":"[^"]+"/)
      expect(text).toMatch(/"text_delta","text":"[^"]+"/)
      expect(text).toContain('"stop_reason":"end_turn"')
      break
    case 'messages':
      expect(data[0]).toMatchObject({ type: 'message', stop_reason: 'end_turn' })
      expect((data[0]?.content as { type: string }[]).map((block) => block.type)).toEqual(['thinking', 'text'])
      break
    case 'responses stream':
      expect(data.at(-1)).toMatchObject({ type: 'response.completed', response: { status: 'completed' } })
      expect(text).toContain('"type":"response.reasoning_text.delta"')
      expect(text).toContain('"type":"response.output_text.delta"')
      break
    case 'responses':
      expect(data[0]).toMatchObject({ object: 'response', status: 'completed' })
      expect((data[0]?.output as { type: string }[]).map((item) => item.type)).toEqual(['reasoning', 'message'])
      break
  }
}

/** Each fleet emulator's counters: generations completed, and those an injected fault ended. */
async function fleetCounts(): Promise<{ requests: number; completed: number; faulted: number }[]> {
  return Promise.all(
    fleetUrls.map(
      async (url) => (await (await fetch(`${url}/emulator/stats`)).json()) as { requests: number; completed: number; faulted: number },
    ),
  )
}

/** The fleet emulators whose request log holds each marker: which backend each answer came from. */
async function servedBy(answers: readonly Answer[]): Promise<number[][]> {
  const logs = await Promise.all(
    fleetUrls.map(async (url) => JSON.stringify(await (await fetch(`${url}/emulator/requests`)).json()) as string),
  )
  return answers.map((answer) => logs.flatMap((log, index) => (log.includes(answer.marker) ? [index] : [])))
}

beforeEach(async () => {
  await clearFleet()
  await env.FLEET.delete(HEALTH_KEY)
})

afterEach(async () => {
  await Promise.all(fleetUrls.map((_, index) => configure(index, { vllmVersion: '0.20.2', fault: 'none' })))
  await clearFleet()
  clearFleetCache(env.FLEET)
})

describe('a fleet mixing vLLM v0.11.0 and v0.20.2 during an upgrade', () => {
  it.each(KINDS)('answers %s requests completely and in one shape whichever release served them', async (kind) => {
    await mixedFleet()
    await useFleet(backendRecord(OLD), backendRecord(NEW))
    // Round robin: the requests alternate between the two releases.
    const testEnv = fleetEnv({ ROUTING_POLICY: 'round_robin' })
    const answers: Answer[] = []
    for (let i = 0; i < 6; i++) answers.push(await send(testEnv, kind))
    for (const answer of answers) expectComplete(answer)
    const served = await servedBy(answers)
    expect(served.every((backends) => backends.length === 1)).toBe(true)
    const byRelease = [OLD, NEW].map((index) => answers.filter((_, i) => served[i]?.[0] === index))
    expect(byRelease.map((group) => group.length)).toEqual([3, 3])
    const [old = [], upgraded = []] = byRelease
    const shape = shapeOfAnswer(upgraded[0] as Answer)
    for (const answer of [...old, ...upgraded]) expect(shapeOfAnswer(answer)).toEqual(shape)
    const stats = await fleetCounts()
    expect(stats.slice(0, 2).map((s) => s.completed)).toEqual([3, 3])
  })

  it('serves every kind of request at once over both releases, each kind in one shape', async () => {
    await mixedFleet()
    await useFleet(backendRecord(OLD), backendRecord(NEW))
    const testEnv = fleetEnv({ ROUTING_POLICY: 'round_robin' })
    const answers = await Promise.all([...KINDS, ...KINDS, ...KINDS, ...KINDS].map((kind) => send(testEnv, kind)))
    for (const answer of answers) expectComplete(answer)
    const served = await servedBy(answers)
    expect(served.every((backends) => backends.length === 1)).toBe(true)
    const counts = [OLD, NEW].map((index) => served.filter((backends) => backends[0] === index).length)
    expect(counts).toEqual([12, 12])
    for (const kind of KINDS) {
      const shapes = answers.filter((answer) => answer.kind === kind).map(shapeOfAnswer)
      for (const shape of shapes) expect(shape).toEqual(shapes[0])
    }
  })

  it.each<{ from: Version; failing: 0 | 1; to: Version; serving: 0 | 1 }>([
    { from: '0.20.2', failing: NEW, to: '0.11.0', serving: OLD },
    { from: '0.11.0', failing: OLD, to: '0.20.2', serving: NEW },
  ])(
    'moves every kind of request from a v$from backend whose engine fails it to the v$to one, in the shape the failing release gives',
    async ({ failing, serving }) => {
      await mixedFleet()
      // The failing release's own answers first, while it is healthy: the shape to expect.
      await useFleet(backendRecord(failing))
      const expected = new Map<Kind, unknown>()
      for (const kind of KINDS) {
        const answer = await send(fleetEnv(), kind)
        expectComplete(answer)
        expected.set(kind, shapeOfAnswer(answer))
      }
      // Now each of its generations gets the dead engine's error before the first token (v0.11.0: a
      // 400 error event, v0.20.2: 500; an HTTP 500 unstreamed), and the other release is the fallback.
      await mixedFleet({ [failing]: 'error_after:0' })
      await useFleet(backendRecord(failing), backendRecord(serving, { state: 'draining' }))
      const testEnv = fleetEnv()
      const answers: Answer[] = []
      for (const kind of [...KINDS, ...KINDS]) answers.push(await send(testEnv, kind))
      for (const answer of answers) {
        expectComplete(answer)
        expect(shapeOfAnswer(answer)).toEqual(expected.get(answer.kind))
      }
      const stats = await fleetCounts()
      // The failing backend was tried (until its circuit opened) and completed nothing.
      expect(stats[failing]?.faulted).toBeGreaterThanOrEqual(1)
      expect(stats[failing]?.completed).toBe(0)
      expect(stats[serving]?.completed).toBe(answers.length)
    },
  )
})
