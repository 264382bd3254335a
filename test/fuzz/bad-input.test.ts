// Bad input never becomes a 5xx, a hang or a backend call. Every request below is malformed by
// construction (a valid request with one guaranteed-invalid mutation, or not a request at all).
import { exports } from 'cloudflare:workers'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { TEST_SECRET } from '../support/keys.ts'
import { MODEL, emulatorStats } from '../support/worker.ts'

interface Attempt {
  method: string
  path: string
  contentType: string
  body: string | null
}

const valid = () => ({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] })
const oddText = fc.string({ unit: fc.constantFrom('\u0000', '\ud800', '\udfff', '\u202e', '\ufeff', 'é', '𝕏', '"', '\\', '{', ']', 'a') })
const notAString = fc.oneof(
  fc.integer(),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.dictionary(fc.string(), fc.integer(), { maxKeys: 2 }),
)
const notANumber = fc.oneof(fc.string(), fc.boolean(), fc.array(fc.integer(), { maxLength: 2 }), fc.constant({}))

function deep(depth: number): string {
  return '['.repeat(depth) + ']'.repeat(depth)
}

/** One guaranteed-invalid change to an otherwise valid chat request. */
const mutation: fc.Arbitrary<Record<string, unknown>> = fc.oneof(
  fc.constant({ messages: undefined }),
  fc.constant({ messages: [] }),
  notAString.map((content) => ({ messages: [{ role: 'user', content }] })),
  oddText.filter((role) => !['system', 'user', 'assistant'].includes(role)).map((role) => ({ messages: [{ role, content: 'x' }] })),
  notANumber.map((temperature) => ({ temperature })),
  // vLLM v0.11.0 takes any temperature >= 0 (sampling_params.py), so only a negative one is invalid.
  fc.double({ min: -1e308, max: -0.0001, noNaN: true }).map((temperature) => ({ temperature })),
  fc.constant({ top_p: 0 }),
  fc.constantFrom('functions', 'store', 'metadata', 'frobnicate', 'guided_json', 'request_id').map((field) => ({ [field]: 1 })),
  fc.integer({ max: 0 }).map((max_tokens) => ({ max_tokens })),
  notAString.filter((value) => value !== null).map((model) => ({ model })),
  oddText
    .filter((model) => model !== MODEL && !['deepseek-r1', 'deepseek-reasoner'].includes(model))
    .map((model) => ({ model: `x${model}` })),
  fc.constant({ stream: false, stream_options: { include_usage: true } }),
  fc.oneof(fc.string(), fc.integer()).map((stream) => ({ stream })),
  fc
    .constantFrom('__proto__', 'constructor', 'prototype')
    .map(
      (key) =>
        JSON.parse(`{"messages":[{"role":"user","content":"x","${key}":{"polluted":1}}],"${key}":{"polluted":1},"n":0}`) as Record<
          string,
          unknown
        >,
    ),
  fc.integer({ min: 50, max: 3000 }).map((depth) => ({ messages: JSON.parse(deep(depth)) as unknown })),
  fc
    .integer({ min: 1, max: 200_000 })
    .map((length) => ({ messages: [{ role: 'user', content: 'x'.repeat(length) }], stop: ['a', 'b', 'c', 'd', 'e'] })),
)

const attempt: fc.Arbitrary<Attempt> = fc.oneof(
  // Rare on purpose: about 50 bodies over the 1 MiB limit are plenty and each costs a megabyte.
  {
    weight: 1,
    arbitrary: fc.integer({ min: 1, max: 4096 }).map((extra) => ({
      method: 'POST',
      path: '/v1/chat/completions',
      contentType: 'application/json',
      body: JSON.stringify({ ...valid(), pad: 'x'.repeat(1024 * 1024 + extra) }),
    })),
  },
  {
    weight: 120,
    arbitrary: mutation.map((change) => ({
      method: 'POST',
      path: '/v1/chat/completions',
      contentType: 'application/json',
      body: JSON.stringify({ ...valid(), ...change }),
    })),
  },
  {
    weight: 40,
    arbitrary: oddText.map((text) => ({
      method: 'POST',
      path: '/v1/chat/completions',
      contentType: 'application/json',
      body: `{"messages":[${text}`,
    })),
  },
  {
    weight: 20,
    arbitrary: fc
      .constantFrom('text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data', '')
      .map((contentType) => ({ method: 'POST', path: '/v1/chat/completions', contentType, body: JSON.stringify(valid()) })),
  },
  {
    weight: 20,
    arbitrary: fc.constantFrom('PUT', 'DELETE', 'PATCH', 'GET').map((method) => ({
      method,
      path: '/v1/chat/completions',
      contentType: 'application/json',
      body: method === 'GET' ? null : JSON.stringify(valid()),
    })),
  },
  {
    weight: 20,
    arbitrary: fc
      .array(fc.constantFrom('a', '%', '%E0%A4%A', '%ZZ', '..', '/', '//', '%00', 'chat', 'completions', '?x=1', '#'), { maxLength: 6 })
      .map((parts) => ({ method: 'POST', path: `/v1/${parts.join('')}x`, contentType: 'application/json', body: '{}' })),
  },
)

async function send(request: Attempt): Promise<Response> {
  return exports.default.fetch('http://gateway.test' + request.path, {
    method: request.method,
    headers: { authorization: `Bearer ${TEST_SECRET}`, ...(request.contentType ? { 'content-type': request.contentType } : {}) },
    body: request.body,
  })
}

describe('malformed requests', () => {
  it('get a 4xx OpenAI-shaped JSON error, never a 5xx, and never reach a backend (10,000 requests)', { timeout: 120_000 }, async () => {
    const backendRequestsBefore = (await emulatorStats()).requests
    const statuses = new Map<number, number>()
    await fc.assert(
      fc.asyncProperty(attempt, async (request) => {
        const response = await send(request)
        statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1)
        expect(response.status).toBeGreaterThanOrEqual(400)
        expect(response.status).toBeLessThan(500)
        expect(response.headers.get('content-type')).toMatch(/^application\/json/)
        const body = (await response.json()) as { error: Record<string, unknown> }
        expect(Object.keys(body)).toEqual(['error'])
        expect(Object.keys(body.error).sort()).toEqual(['code', 'message', 'param', 'type'])
      }),
      { numRuns: 10_000 },
    )
    expect((await emulatorStats()).requests).toBe(backendRequestsBefore)
    expect(({} as Record<string, unknown>).polluted).toBeUndefined()
    // Every family of refusal was exercised, not just one.
    for (const status of [400, 404, 405, 413, 415]) expect(statuses.get(status) ?? 0).toBeGreaterThan(0)
  })
})
