import { createExecutionContext, waitOnExecutionContext } from 'cloudflare:test'
import { env, exports } from 'cloudflare:workers'
import { describe, expect, it } from 'vitest'
import app from '../../src/index.ts'
import { LOCAL_KEY_HINT } from '../../src/middleware/auth.ts'
import { mintStreamToken } from '../../src/auth/stream-token.ts'
import { TEST_KEY_ID, TEST_SECRET, randomSecret, seedKey } from '../support/keys.ts'
import { callWorker, chatBody, chatInit, fetchWithEnv } from '../support/worker.ts'

const raw = (path: string, init?: RequestInit) => exports.default.fetch(`http://gateway.test${path}`, init)
const withKey = (secret: string, init: RequestInit = {}) => ({
  ...init,
  headers: { ...(init.headers as Record<string, string>), authorization: `Bearer ${secret}` },
})

async function errorOf(response: Response) {
  return ((await response.json()) as { error: { message: string; type: string; code: string | null } }).error
}

describe('API keys', () => {
  it('refuses a request without a key with 401 invalid_api_key', async () => {
    const response = await raw('/v1/models')
    expect(response.status).toBe(401)
    expect(await errorOf(response)).toMatchObject({ type: 'authentication_error', code: 'invalid_api_key' })
  })

  it.each([['Basic abc'], ['Bearer'], ['Bearer two words']])('refuses the malformed header %j with 401', async (header) => {
    const response = await raw('/v1/models', { headers: { authorization: header } })
    expect(response.status).toBe(401)
    expect((await errorOf(response)).code).toBe('invalid_api_key')
  })

  it('refuses an unknown key with 401 and never echoes it', async () => {
    const secret = randomSecret()
    const response = await raw('/v1/models', withKey(secret))
    expect(response.status).toBe(401)
    expect(await response.text()).not.toContain(secret)
  })

  it('refuses a revoked key and an expired key with 401', async () => {
    const revoked = randomSecret()
    const expired = randomSecret()
    await seedKey(env.KEYS, revoked, { disabled: true })
    await seedKey(env.KEYS, expired, { expires: Math.floor(Date.now() / 1000) - 1 })
    for (const secret of [revoked, expired]) {
      const response = await raw('/v1/models', withKey(secret))
      expect(response.status).toBe(401)
      expect(await response.text()).not.toContain(secret)
    }
  })

  it('accepts a valid key', async () => {
    expect((await callWorker('/v1/models')).status).toBe(200)
  })

  it('refuses a key without the needed scope with 403', async () => {
    const adminOnly = randomSecret()
    await seedKey(env.KEYS, adminOnly, { scopes: ['admin'] })
    const response = await raw('/v1/models', withKey(adminOnly))
    expect(response.status).toBe(403)
    expect(await errorOf(response)).toMatchObject({ type: 'permission_error', code: 'insufficient_scope' })
  })

  it('stops accepting a key disabled in KV once its cached record has been re-read after its TTL', async () => {
    const secret = randomSecret()
    const record = await seedKey(env.KEYS, secret)
    const ttl = { KEY_CACHE_TTL_MS: '100' }
    expect((await fetchWithEnv(ttl, '/v1/models', withKey(secret))).status).toBe(200)
    await seedKey(env.KEYS, secret, { ...record, disabled: true })
    await new Promise((resolve) => setTimeout(resolve, 150))
    // Stale-while-revalidate: this request is answered from the stale copy and re-reads it behind
    // itself (fetchWithEnv waits for that); the next one sees the revocation. The key's limiter
    // stops a key revoked with `keys revoke --url` at once (test/limits/revocation.test.ts).
    expect((await fetchWithEnv(ttl, '/v1/models', withKey(secret))).status).toBe(200)
    expect((await fetchWithEnv(ttl, '/v1/models', withKey(secret))).status).toBe(401)
  })

  it('refuses a stream token where an API key is needed, as a header or in the query', async () => {
    const token = await mintStreamToken('test-stream-secret-new', {
      keyId: TEST_KEY_ID,
      expires: Math.floor(Date.now() / 1000) + 60,
      origin: null,
    })
    const asHeader = await raw('/v1/chat/completions', {
      ...chatInit(chatBody('hi')),
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    })
    expect(asHeader.status).toBe(401)
    expect((await errorOf(asHeader)).message).toContain('browser streaming endpoints')
    const inQuery = await raw(`/v1/chat/completions?token=${token}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(chatBody('hi')),
    })
    expect(inQuery.status).toBe(401)
  })
})

describe('browser origins and CORS', () => {
  it('answers a preflight with the origin and the asked-for headers reflected, and no credentials', async () => {
    const response = await raw('/v1/messages', {
      method: 'OPTIONS',
      headers: {
        origin: 'https://page.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'x-api-key, anthropic-version, content-type, x-stainless-os',
      },
    })
    expect(response.status).toBe(204)
    expect(response.headers.get('access-control-allow-origin')).toBe('https://page.example')
    expect(response.headers.get('access-control-allow-headers')).toBe('x-api-key,anthropic-version,content-type,x-stainless-os')
    expect(response.headers.get('access-control-allow-methods')).toContain('DELETE')
    expect(response.headers.get('access-control-allow-credentials')).toBeNull()
    expect(response.headers.get('vary')).toContain('Origin')
  })

  it('lets a page read the rate-limit and budget headers of a response', async () => {
    const response = await raw('/v1/models', { headers: { origin: 'https://page.example' } })
    const exposed = (response.headers.get('access-control-expose-headers') ?? '').split(',')
    for (const name of [
      'x-request-id',
      'retry-after-ms',
      'x-ratelimit-remaining-tokens',
      'x-budget-remaining-day',
      'x-budget-reset-month',
    ]) {
      expect(exposed).toContain(name)
    }
  })

  it('lets a browser use a key from one of its own origins or a deployment-wide origin', async () => {
    const secret = randomSecret()
    await seedKey(env.KEYS, secret, { origins: ['https://app.example'] })
    for (const origin of ['https://app.example', 'https://allowed.example', 'http://gateway.test']) {
      const response = await raw('/v1/models', withKey(secret, { headers: { origin } }))
      expect(response.status).toBe(200)
      expect(response.headers.get('access-control-allow-origin')).toBe(origin)
    }
  })

  it('refuses a browser request from an origin the key does not allow with 403', async () => {
    const response = await callWorker('/v1/models', { headers: { origin: 'https://evil.example' } })
    expect(response.status).toBe(403)
    expect((await errorOf(response)).code).toBe('origin_not_allowed')
  })

  it("refuses a key with no origins from a name that only claims to be the Worker's own (DNS rebinding)", async () => {
    const secret = randomSecret()
    await seedKey(env.KEYS, secret, { origins: [] })
    // A rebound name reaches the Worker with its own Host, so the request URL, Host and Origin agree.
    const headers = { host: 'evil.example', origin: 'http://evil.example' }
    const rebound = await exports.default.fetch('http://evil.example/v1/models', withKey(secret, { headers }))
    expect(rebound.status).toBe(403)
    expect((await errorOf(rebound)).code).toBe('origin_not_allowed')
    // The configured public origin is the Worker's own, whatever Host the request names.
    const own = await exports.default.fetch(
      'http://evil.example/v1/models',
      withKey(secret, { headers: { origin: 'http://gateway.test' } }),
    )
    expect(own.status).toBe(200)
  })

  it('takes its own origins from PUBLIC_ORIGINS: a deployment on another name trusts that name only', async () => {
    const secret = randomSecret()
    await seedKey(env.KEYS, secret, { origins: [] })
    const overrides = { PUBLIC_ORIGINS: 'https://gateway.example.com' }
    const from = (origin: string) => fetchWithEnv(overrides, '/v1/models', withKey(secret, { headers: { origin } }))
    expect((await from('https://gateway.example.com')).status).toBe(200)
    expect((await from('http://gateway.test')).status).toBe(403)
  })

  it('lets programs without an Origin header through (SDKs, curl)', async () => {
    expect((await callWorker('/v1/models', { headers: { authorization: `Bearer ${TEST_SECRET}` } })).status).toBe(200)
  })
})

describe('where a local key comes from', () => {
  const LOCAL = { PUBLIC_ORIGINS: 'http://127.0.0.1:8787,http://localhost:8787' }

  /** The app at a full URL (the host included) with some settings changed. */
  async function fetchAt(url: string, overrides: Record<string, unknown>, init: RequestInit = {}): Promise<Response> {
    const ctx = createExecutionContext()
    const response = await app.fetch(new Request(url, init), { ...env, ...overrides }, ctx)
    await waitOnExecutionContext(ctx)
    return response
  }

  it('says it in local development (loopback PUBLIC_ORIGINS, a loopback host): a wrong key and a missing one', async () => {
    for (const host of ['127.0.0.1:8787', 'localhost:8787']) {
      const wrong = await errorOf(await fetchAt(`http://${host}/v1/models`, LOCAL, withKey(randomSecret())))
      expect(wrong).toMatchObject({ code: 'invalid_api_key', message: `Incorrect API key provided. ${LOCAL_KEY_HINT}` })
      expect(wrong.message).toContain('DEV_API_KEY in .dev.vars')
      const missing = await errorOf(await fetchAt(`http://${host}/v1/models`, LOCAL))
      expect(missing.message).toBe(`Missing API key: send it as 'Authorization: Bearer sk-...'. ${LOCAL_KEY_HINT}`)
    }
  })

  it('never says it on a deployment, even one that left PUBLIC_ORIGINS at the local default', async () => {
    const deployed = await errorOf(await raw('/v1/models', withKey(randomSecret())))
    expect(deployed.message).toBe('Incorrect API key provided.')
    expect((await errorOf(await raw('/v1/models'))).message).toBe("Missing API key: send it as 'Authorization: Bearer sk-...'.")
    // Cloudflare routes by the public hostname, so a deployment never sees a loopback host.
    const leftAtDefault = await errorOf(await fetchAt('https://gateway.example.com/v1/models', LOCAL, withKey(randomSecret())))
    expect(leftAtDefault.message).toBe('Incorrect API key provided.')
    // A public origin with a request that names loopback (a tunnel, a forged Host): still no hint.
    const publicOrigin = { PUBLIC_ORIGINS: 'https://gateway.example.com' }
    const loopbackHost = await errorOf(await fetchAt('http://127.0.0.1:8787/v1/models', publicOrigin, withKey(randomSecret())))
    expect(loopbackHost.message).toBe('Incorrect API key provided.')
  })
})
