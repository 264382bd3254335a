import { env, exports } from 'cloudflare:workers'
import { runInDurableObject } from 'cloudflare:test'
import { describe, expect, it, vi } from 'vitest'
import { KEY_ID_PREFIX, KEY_PREFIX, type KeyRecord } from '../../src/auth/key-record.ts'
import { REVOCATION_CHECK_TTL_MS } from '../../src/auth/revocation.ts'
import { KeyLimiter } from '../../src/durable/key-limiter.ts'
import { randomSecret, seedKey } from '../support/keys.ts'
import { keyWithLimits, type LimitedKey } from '../support/limits.ts'
import { callWorker, chatBody, emulatorStats, fetchWithEnv, postChat, resetEmulator } from '../support/worker.ts'

// Revocation through the key's limiter (docs/keys.md): POST /v1/keys/:id/revoke sets a flag that
// every request of the key meets, on every route and whatever its body (the auth middleware asks
// the limiter, at most REVOCATION_CHECK_TTL_MS apart per isolate, before the route runs or, on a
// route that starts a generation, beside it; admission asks it too), so
// the key stops within about a second, whatever the isolate's cached key record (KEY_CACHE_TTL_MS)
// or KV's propagation say.

const short = '[emulator ttft_ms=1 itl_ms=1 reasoning_tokens=2 content_tokens=2]'

let adminSecret: string | null = null
async function revoke(id: string): Promise<Response> {
  if (adminSecret === null) {
    adminSecret = randomSecret()
    await seedKey(env.KEYS, adminSecret, { scopes: ['admin'] })
  }
  return callWorker(`/v1/keys/${id}/revoke`, { method: 'POST', headers: { authorization: `Bearer ${adminSecret}` } })
}

async function storedRecord(id: string): Promise<KeyRecord | null> {
  const hash = await env.KEYS.get(KEY_ID_PREFIX + id)
  return hash ? env.KEYS.get<KeyRecord>(KEY_PREFIX + hash, 'json') : null
}

interface ErrorBody {
  error: { message: string; code: string }
}

async function expectRevoked(key: LimitedKey, body: unknown): Promise<void> {
  const response = await postChat(body, { secret: key.secret })
  expect(response.status).toBe(401)
  expect(((await response.json()) as ErrorBody).error).toMatchObject({ code: 'invalid_api_key', message: 'This API key has been revoked.' })
}

describe('revoking a key through its limiter', () => {
  it('refuses the next request with the revoked-key 401, although this isolate still holds the key record as valid', async () => {
    const key = await keyWithLimits({ concurrentStreams: 8 })
    // Cached in this isolate now, and the limiter's answer left headroom: the next request speculates.
    expect((await postChat(chatBody(short), { secret: key.secret })).status).toBe(200)
    const revoked = await revoke(key.id)
    expect(revoked.status).toBe(200)
    expect(await revoked.json()).toMatchObject({ object: 'key.revocation', key_id: key.id, revoked: true, already_revoked: false })
    await resetEmulator()
    await expectRevoked(key, chatBody(`${short} streamed`, { stream: true }))
    await expectRevoked(key, chatBody(short))
    // A speculative call may have reached the backend; none ran to its end.
    expect((await emulatorStats()).completed).toBe(0)
    expect((await storedRecord(key.id))?.disabled).toBe(true)
  })

  it('answers already_revoked for a key revoked twice, 404 for an unknown key, and 403 to a key without the admin scope', async () => {
    const key = await keyWithLimits({})
    expect((await revoke(key.id)).status).toBe(200)
    expect(await (await revoke(key.id)).json()).toMatchObject({ already_revoked: true })
    const unknown = await revoke('key_00000000000000ff')
    expect(unknown.status).toBe(404)
    expect(((await unknown.json()) as ErrorBody).error.code).toBe('key_not_found')
    const asChat = await callWorker(`/v1/keys/${key.id}/revoke`, { method: 'POST' })
    expect(asChat.status).toBe(403)
  })

  it('keeps the flag in storage: a limiter restarted on it still refuses the key', async () => {
    const key = await keyWithLimits({})
    expect((await revoke(key.id)).status).toBe(200)
    const limiter = env.LIMITER.get(env.LIMITER.idFromName(key.id))
    const limits = { requestsPerMinute: 10, tokensPerMinute: 1_000, concurrentStreams: 5, concurrentStreamsPerIp: null }
    const decision = await runInDurableObject(limiter, (_instance: KeyLimiter, state) =>
      new KeyLimiter(state, env).admit({ leaseId: 'after-restart', reserveTokens: 10, limits, clientIp: null }),
    )
    expect(decision).toMatchObject({ admitted: false, revoked: true })
  })
})

/** One request on a key route: what a key (or a stream token minted from it) can call. */
interface KeyRoute {
  name: string
  method: string
  path: string
  body?: string
  /** The key goes in this header; default Authorization: Bearer. */
  via?: 'x-api-key' | 'token'
}

const MALFORMED = '{"model": '
/** Every route that takes an API key (src/index.ts), with a malformed body where it takes one. */
const CHAT_ROUTES: KeyRoute[] = [
  { name: 'GET /v1/models', method: 'GET', path: '/v1/models' },
  { name: 'GET /v1/models/:model', method: 'GET', path: '/v1/models/deepseek-r1' },
  { name: 'POST /v1/chat/completions (malformed body)', method: 'POST', path: '/v1/chat/completions', body: MALFORMED },
  { name: 'POST /v1/responses (malformed body)', method: 'POST', path: '/v1/responses', body: MALFORMED },
  { name: 'GET /v1/responses/:id', method: 'GET', path: '/v1/responses/resp_0123456789abcdef' },
  { name: 'DELETE /v1/responses/:id', method: 'DELETE', path: '/v1/responses/resp_0123456789abcdef' },
  { name: 'GET /v1/responses/:id/input_items', method: 'GET', path: '/v1/responses/resp_0123456789abcdef/input_items' },
  { name: 'POST /v1/messages (x-api-key, malformed body)', method: 'POST', path: '/v1/messages', body: MALFORMED, via: 'x-api-key' },
  { name: 'POST /v1/messages/count_tokens (malformed body)', method: 'POST', path: '/v1/messages/count_tokens', body: MALFORMED },
  { name: 'POST /v1/stream-tokens', method: 'POST', path: '/v1/stream-tokens', body: '{}' },
  { name: 'POST /v1/stream-tokens (malformed body)', method: 'POST', path: '/v1/stream-tokens', body: MALFORMED },
  { name: 'POST /v1/streams with the key (malformed body)', method: 'POST', path: '/v1/streams', body: MALFORMED },
]
const ADMIN_ROUTES: KeyRoute[] = [
  { name: 'GET /v1/keys/:id/limits', method: 'GET', path: '/v1/keys/key_0000000000000001/limits' },
  { name: 'GET /v1/latency', method: 'GET', path: '/v1/latency' },
  { name: 'GET /metrics', method: 'GET', path: '/metrics' },
  { name: 'POST /v1/dashboard/links', method: 'POST', path: '/v1/dashboard/links' },
  { name: 'POST /v1/keys/:id/revoke', method: 'POST', path: '/v1/keys/key_0000000000000001/revoke' },
]
/** A stream token minted before the revocation, on the one route that takes it. */
const TOKEN_ROUTES: KeyRoute[] = [
  {
    name: 'POST /v1/streams with a stream token',
    method: 'POST',
    path: '/v1/streams',
    body: JSON.stringify(chatBody(short)),
    via: 'token',
  },
  { name: 'POST /v1/streams with a stream token (malformed body)', method: 'POST', path: '/v1/streams', body: MALFORMED, via: 'token' },
  {
    name: 'POST /v1/streams with a stream token (a body that fails validation)',
    method: 'POST',
    path: '/v1/streams',
    body: JSON.stringify({ model: 'deepseek-r1', messages: 'hi' }),
    via: 'token',
  },
]

/** The Worker's own entry point, with no key but the one the route is given (callWorker adds the test key). */
const worker = (path: string, init: RequestInit) => exports.default.fetch(`http://gateway.test${path}`, init)

function send(route: KeyRoute, credential: string, fetcher = worker) {
  const headers: Record<string, string> = { 'content-type': 'application/json' }
  if (route.via === 'x-api-key') headers['x-api-key'] = credential
  else if (route.via !== 'token') headers.authorization = `Bearer ${credential}`
  const path = route.via === 'token' ? `${route.path}?token=${encodeURIComponent(credential)}` : route.path
  return fetcher(path, { method: route.method, headers, ...(route.body === undefined ? {} : { body: route.body }) })
}

/** The routes' statuses, by name, and any that did not say why in the revoked-key words. */
async function refusals(routes: KeyRoute[], credential: string, fetcher?: Parameters<typeof send>[2]) {
  const statuses: Record<string, number> = {}
  const unexplained: string[] = []
  for (const route of routes) {
    const response = await send(route, credential, fetcher)
    statuses[route.name] = response.status
    // OpenAI's shape, or Anthropic's on /v1/messages: the same message either way.
    const text = await response.text()
    if (response.status === 401 && !text.includes('This API key has been revoked.')) unexplained.push(`${route.name}: ${text}`)
  }
  return { statuses, unexplained }
}

const all401 = (routes: KeyRoute[]) => Object.fromEntries(routes.map((route) => [route.name, 401]))

async function mintToken(secret: string): Promise<string> {
  const response = await callWorker('/v1/stream-tokens', {
    method: 'POST',
    headers: { authorization: `Bearer ${secret}`, 'content-type': 'application/json' },
    body: '{}',
  })
  expect(response.status).toBe(200)
  return ((await response.json()) as { token: string }).token
}

describe('a revocation reaches every route of the key', () => {
  it('through the admin route: every key route, and a stream token minted before, answer the revoked-key 401 at once, whatever the body', async () => {
    const key = await keyWithLimits({})
    const token = await mintToken(key.secret)
    // This isolate has cached the key as valid, and its limiter as not revoked.
    expect((await callWorker('/v1/models', { headers: { authorization: `Bearer ${key.secret}` } })).status).toBe(200)
    expect((await revoke(key.id)).status).toBe(200)
    const byKey = await refusals(CHAT_ROUTES, key.secret)
    expect(byKey.statuses).toEqual(all401(CHAT_ROUTES))
    expect(byKey.unexplained).toEqual([])
    const byToken = await refusals(TOKEN_ROUTES, token)
    expect(byToken.statuses).toEqual(all401(TOKEN_ROUTES))
    expect(byToken.unexplained).toEqual([])
  })

  it('from another isolate: this isolate refuses every key route within REVOCATION_CHECK_TTL_MS, though it had just checked the key', async () => {
    const key = await keyWithLimits({})
    const token = await mintToken(key.secret)
    expect((await callWorker('/v1/models', { headers: { authorization: `Bearer ${key.secret}` } })).status).toBe(200)
    // Another isolate's POST /v1/keys/:id/revoke: the flag is set in the limiter, and nothing here hears of it.
    const revokedAt = Date.now()
    expect(await env.LIMITER.get(env.LIMITER.idFromName(key.id)).revoke()).toBe(true)
    await vi.waitFor(
      async () => expect((await callWorker('/v1/models', { headers: { authorization: `Bearer ${key.secret}` } })).status).toBe(401),
      { timeout: 2_000, interval: 50 },
    )
    expect(Date.now() - revokedAt).toBeLessThanOrEqual(REVOCATION_CHECK_TTL_MS + 500)
    const byKey = await refusals(CHAT_ROUTES, key.secret)
    expect(byKey.statuses).toEqual(all401(CHAT_ROUTES))
    const byToken = await refusals(TOKEN_ROUTES, token)
    expect(byToken.statuses).toEqual(all401(TOKEN_ROUTES))
    expect([...byKey.unexplained, ...byToken.unexplained]).toEqual([])
  })

  it('stops an admin key on every admin route', async () => {
    const admin = randomSecret()
    const record = await seedKey(env.KEYS, admin, { scopes: ['admin'] })
    expect((await callWorker('/v1/latency', { headers: { authorization: `Bearer ${admin}` } })).status).toBe(200)
    expect((await revoke(record.id)).status).toBe(200)
    const refused = await refusals(ADMIN_ROUTES, admin)
    expect(refused.statuses).toEqual(all401(ADMIN_ROUTES))
    expect(refused.unexplained).toEqual([])
    // Refused before the route ran: its revocation of the test key never happened.
    expect(await env.LIMITER.get(env.LIMITER.idFromName('key_0000000000000001')).revoked()).toBe(false)
  })

  it('with RATE_LIMITS=off too: the limiter still holds the flag and is still asked, so every route, generation included, refuses the key', async () => {
    const off = (path: string, init: RequestInit) => fetchWithEnv({ RATE_LIMITS: 'off' }, path, init)
    const key = await keyWithLimits({})
    const models = { name: 'GET /v1/models', method: 'GET', path: '/v1/models' }
    expect((await send(models, key.secret, off)).status).toBe(200)
    // Revoked by another isolate: this one learns it only from the limiter.
    expect(await env.LIMITER.get(env.LIMITER.idFromName(key.id)).revoke()).toBe(true)
    await vi.waitFor(async () => expect((await send(models, key.secret, off)).status).toBe(401), { timeout: 2_000, interval: 50 })
    const generation = {
      name: 'POST /v1/chat/completions',
      method: 'POST',
      path: '/v1/chat/completions',
      body: JSON.stringify(chatBody(short)),
    }
    const refused = await refusals([models, generation], key.secret, off)
    expect(refused.statuses).toEqual(all401([models, generation]))
    expect(refused.unexplained).toEqual([])
  })

  it('a limiter that does not answer: the check fails open, whatever RATE_LIMITER_FAILURE_MODE says, and admission still fails closed when told to', async () => {
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {})
    const never = () => new Promise<never>(() => {})
    const silent = { idFromName: (name: string) => env.LIMITER.idFromName(name), get: () => ({ revoked: never, admit: never }) }
    const models = { name: 'GET /v1/models', method: 'GET', path: '/v1/models' }
    const generation = {
      name: 'POST /v1/chat/completions',
      method: 'POST',
      path: '/v1/chat/completions',
      body: JSON.stringify(chatBody(short)),
    }
    try {
      for (const mode of ['open', 'closed']) {
        const key = await keyWithLimits({})
        const fetcher = (path: string, init: RequestInit) =>
          fetchWithEnv({ LIMITER: silent, RATE_LIMITER_TIMEOUT_MS: '50', RATE_LIMITER_FAILURE_MODE: mode }, path, init)
        const startedAt = Date.now()
        expect((await send(models, key.secret, fetcher)).status).toBe(200)
        // Within the TTL the next request does not wait for the timeout again.
        expect((await send(models, key.secret, fetcher)).status).toBe(200)
        expect(Date.now() - startedAt).toBeLessThan(1_000)
        if (mode === 'closed') expect((await send(generation, key.secret, fetcher)).status).toBe(503)
      }
      const logged = warn.mock.calls.map(([line]) => JSON.parse(String(line)) as Record<string, unknown>)
      expect(logged).toContainEqual(
        expect.objectContaining({ event: 'revocation_check_unavailable', error: 'RevocationCheckTimeout', failureMode: 'open' }),
      )
    } finally {
      warn.mockRestore()
    }
  })
})
