import { env, exports } from 'cloudflare:workers'
import { describe, expect, it } from 'vitest'
import { REVOCATION_CHECK_TTL_MS } from '../../src/auth/revocation.ts'
import { mintDashboardValue } from '../../src/dashboard/session.ts'
import { fetchWithEnv } from '../support/worker.ts'
import { TEST_SECRET, randomSecret, seedKey } from '../support/keys.ts'

const BASE = 'http://gateway.test'
const SIGNING_SECRET = 'test-stream-secret-new'

function get(path: string, cookie?: string): Promise<Response> {
  return exports.default.fetch(`${BASE}${path}`, { headers: cookie ? { cookie } : {}, redirect: 'manual' })
}

function loginWith(key: string, headers: Record<string, string> = {}): Promise<Response> {
  return exports.default.fetch(`${BASE}/dashboard/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
    body: new URLSearchParams({ key }).toString(),
    redirect: 'manual',
  })
}

/** The name=value part of the session cookie a response sets. */
function sessionCookie(response: Response): string {
  const header = response.headers.get('set-cookie') ?? ''
  expect(header).toMatch(/^__Host-dashboard=/)
  return header.split(';')[0] as string
}

async function adminKey(): Promise<{ secret: string; id: string }> {
  const secret = randomSecret()
  const record = await seedKey(env.KEYS, secret, { scopes: ['admin'] })
  return { secret, id: record.id }
}

describe('the dashboard sign-in', () => {
  it('sends a browser without a session to the login form', async () => {
    const response = await get('/dashboard')
    expect(response.status).toBe(303)
    expect(response.headers.get('location')).toBe('/dashboard/login')
    const form = await get('/dashboard/login')
    expect(form.status).toBe(200)
    expect(await form.text()).toContain('<form class="login" method="post" action="/dashboard/login">')
  })

  it('starts a secure, script-proof, same-site session for an admin key', async () => {
    const { secret } = await adminKey()
    const response = await loginWith(secret)
    expect(response.status).toBe(303)
    expect(response.headers.get('location')).toBe('/dashboard')
    const header = response.headers.get('set-cookie') ?? ''
    expect(header).toContain('Secure')
    expect(header).toContain('HttpOnly')
    expect(header).toContain('SameSite=Strict')
    expect(header).toContain('Path=/')
    const page = await get('/dashboard', sessionCookie(response))
    expect(page.status).toBe(200)
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'")
    // Not no-referrer: with it, the browser sends the form's POST with `Origin: null`, refused as cross-site.
    expect(page.headers.get('referrer-policy')).toBe('same-origin')
    expect(await page.text()).toContain('<script src="/dashboard/app.js" defer></script>')
  })

  it('ends the sessions of a key revoked through its limiter, and refuses it at the sign-in, though KV still shows it valid', async () => {
    const { secret, id } = await adminKey()
    const cookie = sessionCookie(await loginWith(secret))
    expect((await get('/dashboard', cookie)).status).toBe(200)
    // Another isolate's revocation: only the limiter's flag is set here.
    await env.LIMITER.get(env.LIMITER.idFromName(id)).revoke()
    await new Promise((resolve) => setTimeout(resolve, REVOCATION_CHECK_TTL_MS + 50))
    const page = await get('/dashboard', cookie)
    expect(page.status).toBe(303)
    expect(page.headers.get('location')).toBe('/dashboard/login')
    expect((await get('/dashboard/data', cookie)).status).toBe(401)
    const again = await loginWith(secret)
    expect(again.headers.get('set-cookie')).toBeNull()
  })

  it('serves its script to a session only, and its style to anyone (the login form uses it)', async () => {
    const anonymous = await get('/dashboard/app.js')
    expect(anonymous.status).toBe(401)
    expect(await anonymous.text()).not.toContain('/dashboard/data')
    const { secret } = await adminKey()
    const script = await get('/dashboard/app.js', sessionCookie(await loginWith(secret)))
    expect(script.status).toBe(200)
    expect(script.headers.get('content-type')).toBe('text/javascript; charset=utf-8')
    expect(script.headers.get('x-content-type-options')).toBe('nosniff')
    const source = await script.text()
    expect(source).toContain("fetch('/dashboard/data?window='")
    expect(source).not.toMatch(/innerHTML|insertAdjacentHTML|document\.write/)
    const style = await get('/dashboard/style.css')
    expect(style.status).toBe(200)
    expect(style.headers.get('content-type')).toBe('text/css; charset=utf-8')
    expect(await style.text()).toContain('form.login')
  })

  it('keeps its pages on their own script and style: no inline script or style allowed', async () => {
    const form = await get('/dashboard/login')
    const policy = form.headers.get('content-security-policy') ?? ''
    expect(policy).toContain("script-src 'self'")
    expect(policy).toContain("style-src 'self'")
    expect(policy).not.toContain('unsafe-inline')
    expect(form.headers.get('cache-control')).toBe('no-store')
    const html = await form.text()
    expect(html).toContain('<link rel="stylesheet" href="/dashboard/style.css" />')
    // The alert is there, empty (it hides itself), until the server has something to say.
    expect(html).toContain('<p class="error" role="alert"></p>')
    expect(html).not.toMatch(/<style|<script|\{\{/)
  })

  it('refuses a key without the admin scope, and a wrong key, without saying which', async () => {
    for (const key of [TEST_SECRET, randomSecret(), '']) {
      const response = await loginWith(key)
      expect(response.status).toBe(401)
      expect(response.headers.get('set-cookie')).toBeNull()
      expect(await response.text()).toContain('<p class="error" role="alert">That key cannot open the dashboard.</p>')
    }
  })

  it('serves the data to a session only, and answers 401 JSON to anyone else', async () => {
    const { secret } = await adminKey()
    const cookie = sessionCookie(await loginWith(secret))
    const data = await get('/dashboard/data?window=1h', cookie)
    expect(data.status).toBe(200)
    const body = (await data.json()) as {
      window: string
      bucketMs: number
      series: Record<string, Record<string, unknown>[]>
      report: { object: string; overall: Record<string, unknown> }
    }
    expect(body).toMatchObject({ window: '1h', bucketMs: 60_000, report: { object: 'latency.report' } })
    expect(body.series.all).toHaveLength(60)
    // The edge-queue wait beside the first-token figures: a p90 per point, percentiles in the report.
    expect(body.series.all?.every((point) => 'edgeWaitP90' in point)).toBe(true)
    expect(body.report.overall.edge_wait_ms).toMatchObject({ waited: expect.any(Number) })
    const anonymous = await get('/dashboard/data')
    expect(anonymous.status).toBe(401)
    expect(((await anonymous.json()) as { error: { code: string } }).error.code).toBe('dashboard_session_required')
  })

  it("serves the Keys section's data to a session only: the board, and a key's tokens per day from its limiter", async () => {
    const { secret } = await adminKey()
    const cookie = sessionCookie(await loginWith(secret))
    const flaggedId = `key_${[...crypto.getRandomValues(new Uint8Array(8))].map((b) => b.toString(16).padStart(2, '0')).join('')}`
    await env.TELEMETRY.get(env.TELEMETRY.idFromName('global')).reportKey({
      keyId: flaggedId,
      at: Date.now(),
      budgets: [],
      spike: { flagged: true, hourTokens: 70_000, normalTokens: 3_000 },
    })
    const board = await get('/dashboard/keys', cookie)
    expect(board.status).toBe(200)
    expect(board.headers.get('cache-control')).toBe('no-store')
    const body = (await board.json()) as { object: string; flagged: { key_id: string; spike: Record<string, unknown> }[] }
    expect(body.object).toBe('key.board')
    expect(body.flagged.find((entry) => entry.key_id === flaggedId)?.spike).toEqual({
      flagged: true,
      hour_tokens: 70_000,
      normal_tokens: 3_000,
    })

    const key = await seedKey(env.KEYS, randomSecret())
    for (const days of [30, 90]) {
      const usage = await get(`/dashboard/keys/${key.id}/usage?days=${days}`, cookie)
      expect(usage.status).toBe(200)
      const history = (await usage.json()) as { object: string; key_id: string; days: { date: string; total_tokens: number }[] }
      expect(history).toMatchObject({ object: 'key.usage_history', key_id: key.id })
      expect(history.days).toHaveLength(days)
      expect(history.days.at(-1)?.date).toBe(new Date().toISOString().slice(0, 10))
    }
    expect((await get(`/dashboard/keys/${key.id}/usage?days=1000`, cookie)).status).toBe(400)
    expect((await get('/dashboard/keys/key_ffffffffffffffff/usage', cookie)).status).toBe(404)
    // Without a session: 401, nothing about any key.
    for (const path of ['/dashboard/keys', `/dashboard/keys/${key.id}/usage`]) {
      const anonymous = await get(path)
      expect(anonymous.status).toBe(401)
      expect(((await anonymous.json()) as { error: { code: string } }).error.code).toBe('dashboard_session_required')
    }
    // The page has the section, and its script reads these endpoints with the session, never an API key.
    const page = await (await get('/dashboard', cookie)).text()
    expect(page).toContain('<h2>Keys</h2>')
    const script = await (await get('/dashboard/app.js', cookie)).text()
    expect(script).toContain("getJson('/dashboard/keys')")
    expect(script).not.toMatch(/authorization|Bearer/i)
  })

  it('rejects a tampered cookie, a link token used as a cookie, and the session of a key revoked since', async () => {
    const { secret, id } = await adminKey()
    const cookie = sessionCookie(await loginWith(secret))
    const tampered = `${cookie.slice(0, -2)}${cookie.endsWith('A') ? 'B' : 'A'}x`
    expect((await get('/dashboard', tampered)).status).toBe(303)
    const link = await mintDashboardValue('dashboard-link', id, 600, SIGNING_SECRET, Math.floor(Date.now() / 1000))
    expect((await get('/dashboard', `__Host-dashboard=${link}`)).status).toBe(303)
    // A session signed for a key that is revoked now: the record decides, not the cookie.
    const revoked = await seedKey(env.KEYS, randomSecret(), { scopes: ['admin'], disabled: true })
    const session = await mintDashboardValue('dashboard-session', revoked.id, 600, SIGNING_SECRET, Math.floor(Date.now() / 1000))
    expect((await get('/dashboard', `__Host-dashboard=${session}`)).status).toBe(303)
    expect((await get('/dashboard', cookie)).status).toBe(200)
  })

  it('signs in from a link the API makes for an admin key, once valid, never after it expired', async () => {
    const { secret, id } = await adminKey()
    const made = await exports.default.fetch(`${BASE}/v1/dashboard/links`, {
      method: 'POST',
      headers: { authorization: `Bearer ${secret}` },
    })
    expect(made.status).toBe(201)
    const link = (await made.json()) as { object: string; url: string; expires_at: number }
    expect(link.object).toBe('dashboard.link')
    const path = new URL(link.url).pathname + new URL(link.url).search
    const opened = await get(path)
    expect(opened.status).toBe(303)
    expect((await get('/dashboard', sessionCookie(opened))).status).toBe(200)
    // Once: the same link again, within its 10 minutes, starts nothing.
    const again = await get(path)
    expect(again.status).toBe(401)
    expect(again.headers.get('set-cookie')).toBeNull()
    expect(await again.text()).toContain('already been used')
    const expired = await mintDashboardValue('dashboard-link', id, -1, SIGNING_SECRET, Math.floor(Date.now() / 1000))
    const late = await get(`/dashboard/link?token=${expired}`)
    expect(late.status).toBe(401)
    expect(await late.text()).toContain('invalid or has expired')
  })

  it('lets one of two browsers opening the same link at once in, never both', async () => {
    const { id } = await adminKey()
    const token = await mintDashboardValue('dashboard-link', id, 600, SIGNING_SECRET, Math.floor(Date.now() / 1000), crypto.randomUUID())
    const answers = await Promise.all(Array.from({ length: 5 }, () => get(`/dashboard/link?token=${token}`)))
    expect(answers.map((answer) => answer.status).sort()).toEqual([303, 401, 401, 401, 401])
  })

  it('refuses a link with 503, and no session, when its one-use check fails or never answers', { timeout: 30_000 }, async () => {
    const { id } = await adminKey()
    const broken = (consume: () => Promise<never>) => ({
      DASHBOARD_LINKS: { idFromName: (name: string) => ({ name }), get: () => ({ consume }) },
    })
    const cases = [broken(() => Promise.reject(new Error('Durable Object is overloaded'))), broken(() => new Promise<never>(() => {}))]
    // The silent one is answered after LINK_CHECK_TIMEOUT_MS: the browser is not held longer.
    for (const links of cases) {
      const token = await mintDashboardValue('dashboard-link', id, 600, SIGNING_SECRET, Math.floor(Date.now() / 1000), crypto.randomUUID())
      const response = await fetchWithEnv(links, `/dashboard/link?token=${token}`, { redirect: 'manual' })
      expect(response.status).toBe(503)
      expect(response.headers.get('set-cookie')).toBeNull()
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe('dashboard_unavailable')
    }
  })

  it('refuses a link made without a link id (before links were single-use)', async () => {
    const { id } = await adminKey()
    const token = await mintDashboardValue('dashboard-link', id, 600, SIGNING_SECRET, Math.floor(Date.now() / 1000))
    expect((await get(`/dashboard/link?token=${token}`)).status).toBe(401)
  })
})

describe('the dashboard sign-in and sign-out from other sites', () => {
  const crossSite = [
    ['a cross-site form (another Origin)', { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' }],
    ['an opaque origin (sandboxed frame, data: URL)', { origin: 'null' }],
    ['a same-site sibling (Sec-Fetch-Site: same-site)', { origin: 'http://gateway.test', 'sec-fetch-site': 'same-site' }],
    [
      'a rebound DNS name (Host and Origin agree, neither is the Worker)',
      { origin: 'http://evil.example', 'sec-fetch-site': 'same-origin' },
    ],
  ] as const

  it.each(crossSite)('refuses sign-in from %s with 403 and no session', async (_name, headers) => {
    const { secret } = await adminKey()
    const response = await loginWith(secret, headers)
    expect(response.status).toBe(403)
    expect(response.headers.get('set-cookie')).toBeNull()
    expect(((await response.json()) as { error: { code: string } }).error.code).toBe('cross_site_request')
  })

  it.each(crossSite)('refuses sign-out from %s with 403, keeping the session', async (_name, headers) => {
    const response = await exports.default.fetch(`${BASE}/dashboard/logout`, { method: 'POST', headers, redirect: 'manual' })
    expect(response.status).toBe(403)
    expect(response.headers.get('set-cookie')).toBeNull()
  })

  it("accepts the dashboard's own form (its Origin, same-origin) and a client that sends neither header", async () => {
    const { secret } = await adminKey()
    const own = { origin: 'http://gateway.test', 'sec-fetch-site': 'same-origin' }
    expect((await loginWith(secret, own)).status).toBe(303)
    expect((await loginWith(secret)).status).toBe(303)
    const out = await exports.default.fetch(`${BASE}/dashboard/logout`, { method: 'POST', headers: own, redirect: 'manual' })
    expect(out.status).toBe(303)
    expect(out.headers.get('set-cookie')).toMatch(/^__Host-dashboard=;/)
  })
})
