import { env } from 'cloudflare:workers'
import { Hono } from 'hono'
import { describe, expect, it } from 'vitest'
import { readConfig } from '../../src/config.ts'
import type { AppEnv } from '../../src/env.ts'
import { renderError } from '../../src/errors.ts'
import { requireKey } from '../../src/middleware/auth.ts'
import { TEST_KEY_ID, TEST_SECRET, randomSecret, seedKey } from '../support/keys.ts'
import { callWorker, fetchWithEnv } from '../support/worker.ts'

interface Minted {
  token: string
  expires_at: number
  key_id: string
  origin: string | null
}

const mint = (body?: unknown, headers: Record<string, string> = {}) =>
  callWorker('/v1/stream-tokens', {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: body === undefined ? '' : JSON.stringify(body),
  })

/** A stand-in for the browser streaming endpoints (issue 7): the same middleware, tokens on. */
const browserApp = new Hono<AppEnv>()
browserApp.use(async (c, next) => {
  c.set('config', readConfig(c.env))
  await next()
})
browserApp.get('/stream', requireKey({ scope: 'chat', acceptStreamToken: true }), (c) =>
  c.json({ key: c.get('principal').keyId, via: c.get('principal').via }),
)
browserApp.onError(renderError)
const openStream = (token: string, origin?: string) =>
  browserApp.request(`/stream?token=${encodeURIComponent(token)}`, { headers: origin ? { origin } : {} }, env)

describe('POST /v1/stream-tokens', () => {
  it('mints a token for the calling key that expires in 5 minutes by default', async () => {
    const response = await mint()
    expect(response.status).toBe(200)
    const minted = (await response.json()) as Minted
    expect(minted.key_id).toBe(TEST_KEY_ID)
    expect(minted.expires_at - Math.floor(Date.now() / 1000)).toBeGreaterThanOrEqual(299)
    expect(minted.expires_at - Math.floor(Date.now() / 1000)).toBeLessThanOrEqual(300)
  })

  it.each([[0], [901], [1.5]])('refuses ttl_seconds=%j: at most 15 minutes', async (ttl) => {
    const response = await mint({ ttl_seconds: ttl })
    expect(response.status).toBe(400)
    expect(((await response.json()) as { error: { param: string } }).error.param).toBe('ttl_seconds')
  })

  it('binds a token to an origin the key allows, and refuses one it does not', async () => {
    expect((await mint({ origin: 'https://allowed.example' })).status).toBe(200)
    const refused = await mint({ origin: 'https://evil.example' })
    expect(refused.status).toBe(403)
  })

  it('answers 503 when the deployment has no stream token secret', async () => {
    const response = await fetchWithEnv({ STREAM_TOKEN_SECRETS: '' }, '/v1/stream-tokens', {
      method: 'POST',
      headers: { authorization: `Bearer ${TEST_SECRET}`, 'content-type': 'application/json' },
      body: '{}',
    })
    expect(response.status).toBe(503)
  })
})

describe('a browser streaming endpoint', () => {
  it('accepts a fresh token in the query string, as the key that minted it', async () => {
    const { token } = (await (await mint({ ttl_seconds: 60 })).json()) as Minted
    const response = await openStream(token)
    expect(response.status).toBe(200)
    expect(await response.json()).toEqual({ key: TEST_KEY_ID, via: 'stream_token' })
  })

  it('refuses a tampered token, and a token bound to another origin, with 401', async () => {
    const { token } = (await (await mint({ origin: 'https://allowed.example' })).json()) as Minted
    expect((await openStream(token, 'https://allowed.example')).status).toBe(200)
    expect((await openStream(token, 'https://other.example')).status).toBe(401)
    expect((await openStream(`${token.slice(0, -2)}xx`, 'https://allowed.example')).status).toBe(401)
  })

  it('refuses the tokens of a key that has been revoked', async () => {
    const secret = randomSecret()
    const record = await seedKey(env.KEYS, secret)
    const minted = await callWorker('/v1/stream-tokens', { method: 'POST', headers: { authorization: `Bearer ${secret}` } })
    const { token } = (await minted.json()) as Minted
    await seedKey(env.KEYS, secret, { ...record, disabled: true })
    const response = await browserApp.request(`/stream?token=${token}`, {}, { ...env, KEY_CACHE_TTL_MS: '1' })
    expect(response.status).toBe(401)
  })
})
