// The Cloudflare Access service token: its two headers on every backend call (chat, the cron
// probe's /health and /metrics), from the default secret pair or the one a fleet entry names, and
// a named pair that is not set fails that backend over without sending it anything.
import { env } from 'cloudflare:workers'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { runHealthProbe } from '../../src/fleet/probe.ts'
import { HEALTH_KEY } from '../../src/fleet/records.ts'
import { TEST_SECRET } from '../support/keys.ts'
import { backendRecord, callIn, clearFleet, fleetEnv, fleetUrls, prepareFleet, writeFleet, type TestEnv } from '../support/fleet.ts'
import { chatBody, type RecordedRequest } from '../support/worker.ts'

const short = '[emulator ttft_ms=5 itl_ms=2 reasoning_tokens=3 content_tokens=3]'
const PAIRS = {
  ACCESS_CLIENT_ID: 'default-id.access',
  ACCESS_CLIENT_SECRET: 'default-secret-0d1f',
  ACCESS_CLIENT_ID_TUNNEL_A: 'tunnel-a-id.access',
  ACCESS_CLIENT_SECRET_TUNNEL_A: 'tunnel-a-secret-5e2c',
  ACCESS_CLIENT_ID_TUNNEL_B: 'tunnel-b-id.access',
  ACCESS_CLIENT_SECRET_TUNNEL_B: 'tunnel-b-secret-9a7b',
}

async function chat(testEnv: TestEnv) {
  const init: RequestInit = {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${TEST_SECRET}` },
    body: JSON.stringify(chatBody(short)),
  }
  const { response, settled } = await callIn(testEnv, '/v1/chat/completions', init)
  const body = await response.text()
  await settled()
  return { status: response.status, body }
}

/** The chat requests fleet emulator `index` received, with their headers. */
async function chatRequests(index: 0 | 1 | 2): Promise<RecordedRequest[]> {
  const all = (await (await fetch(`${fleetUrls[index]}/emulator/requests`)).json()) as RecordedRequest[]
  return all.filter((request) => request.path === '/v1/chat/completions')
}

function accessHeaders(request: RecordedRequest | undefined) {
  return { id: request?.headers['cf-access-client-id'], secret: request?.headers['cf-access-client-secret'] }
}

beforeEach(async () => {
  await clearFleet()
  await env.FLEET.delete(HEALTH_KEY)
  await prepareFleet()
})

describe('Cloudflare Access headers on chat requests', () => {
  it('sends the default pair beside the vLLM key to a backend whose entry names none', async () => {
    await writeFleet([backendRecord(0)])
    expect((await chat(fleetEnv(PAIRS))).status).toBe(200)
    const [request] = await chatRequests(0)
    expect(accessHeaders(request)).toEqual({ id: PAIRS.ACCESS_CLIENT_ID, secret: PAIRS.ACCESS_CLIENT_SECRET })
    expect(request?.headers.authorization).toBe('<redacted>')
  })

  it("sends each backend its own entry's pair, so one fleet spans two tunnels", async () => {
    const a = backendRecord(0, { accessSecret: 'TUNNEL_A' })
    const b = backendRecord(1, { accessSecret: 'TUNNEL_B' })
    // A draining backend gets requests only when no active one can serve: each chat goes where it is told.
    await writeFleet([a, { ...b, state: 'draining' }])
    expect((await chat(fleetEnv(PAIRS))).status).toBe(200)
    await writeFleet([{ ...a, state: 'draining' }, b])
    await new Promise((resolve) => setTimeout(resolve, 5)) // past FLEET_CACHE_TTL_MS=1
    expect((await chat(fleetEnv(PAIRS))).status).toBe(200)
    expect((await chatRequests(0)).map(accessHeaders)).toEqual([
      { id: PAIRS.ACCESS_CLIENT_ID_TUNNEL_A, secret: PAIRS.ACCESS_CLIENT_SECRET_TUNNEL_A },
    ])
    expect((await chatRequests(1)).map(accessHeaders)).toEqual([
      { id: PAIRS.ACCESS_CLIENT_ID_TUNNEL_B, secret: PAIRS.ACCESS_CLIENT_SECRET_TUNNEL_B },
    ])
  })

  it('sends no Access headers when no pair is set (a local emulator has no tunnel)', async () => {
    await writeFleet([backendRecord(0)])
    expect((await chat(fleetEnv())).status).toBe(200)
    const [request] = await chatRequests(0)
    expect(Object.keys(request?.headers ?? {}).filter((name) => name.startsWith('cf-access-'))).toEqual([])
  })
})

describe('a fleet entry naming a pair that is not set', () => {
  it('sends that backend nothing and fails over to the next', async () => {
    await writeFleet([backendRecord(0, { accessSecret: 'MISSING' }), backendRecord(1, { state: 'draining' })])
    expect((await chat(fleetEnv(PAIRS))).status).toBe(200)
    expect(await chatRequests(0)).toEqual([])
    expect(accessHeaders((await chatRequests(1))[0])).toEqual({ id: PAIRS.ACCESS_CLIENT_ID, secret: PAIRS.ACCESS_CLIENT_SECRET })
  })

  it('answers 502 upstream_credentials_missing naming the missing secrets, no value, when no backend is left', async () => {
    await writeFleet([backendRecord(0, { accessSecret: 'TUNNEL_A' })])
    const halfPair: Record<string, string> = { ...PAIRS }
    delete halfPair.ACCESS_CLIENT_SECRET_TUNNEL_A
    const answer = await chat(fleetEnv(halfPair))
    expect(answer.status).toBe(502)
    const error = (JSON.parse(answer.body) as { error: { code: string; message: string } }).error
    expect(error.code).toBe('upstream_credentials_missing')
    expect(error.message).toContain('ACCESS_CLIENT_SECRET_TUNNEL_A')
    expect(error.message).not.toContain('ACCESS_CLIENT_ID_TUNNEL_A')
    for (const value of Object.values(PAIRS)) expect(answer.body).not.toContain(value)
    expect(await chatRequests(0)).toEqual([])
  })
})

describe('the cron probe', () => {
  let probed: { url: string; id: string | null; secret: string | null }[] = []
  beforeEach(() => {
    probed = []
    const realFetch = globalThis.fetch
    vi.spyOn(globalThis, 'fetch').mockImplementation((input, init) => {
      const request = new Request(input, init)
      probed.push({
        url: request.url,
        id: request.headers.get('cf-access-client-id'),
        secret: request.headers.get('cf-access-client-secret'),
      })
      return realFetch(request)
    })
  })
  afterEach(() => {
    vi.restoreAllMocks()
  })

  it("sends each backend's pair to /health and /metrics, and calls a backend without its secrets unhealthy, by name", async () => {
    await writeFleet([backendRecord(0, { accessSecret: 'TUNNEL_A' }), backendRecord(1), backendRecord(2, { accessSecret: 'MISSING' })])
    const snapshot = await runHealthProbe(fleetEnv(PAIRS))
    const sent = (index: 0 | 1 | 2) => probed.filter((call) => call.url.startsWith(`${fleetUrls[index]}/`))
    expect(sent(0)).toEqual([
      { url: `${fleetUrls[0]}/health`, id: PAIRS.ACCESS_CLIENT_ID_TUNNEL_A, secret: PAIRS.ACCESS_CLIENT_SECRET_TUNNEL_A },
      { url: `${fleetUrls[0]}/metrics`, id: PAIRS.ACCESS_CLIENT_ID_TUNNEL_A, secret: PAIRS.ACCESS_CLIENT_SECRET_TUNNEL_A },
    ])
    expect(sent(1)).toEqual([
      { url: `${fleetUrls[1]}/health`, id: PAIRS.ACCESS_CLIENT_ID, secret: PAIRS.ACCESS_CLIENT_SECRET },
      { url: `${fleetUrls[1]}/metrics`, id: PAIRS.ACCESS_CLIENT_ID, secret: PAIRS.ACCESS_CLIENT_SECRET },
    ])
    expect(sent(2)).toEqual([])
    expect(snapshot.backends['gpu-a']?.healthy).toBe(true)
    expect(snapshot.backends['gpu-c']).toMatchObject({ healthy: false })
    expect(snapshot.backends['gpu-c']?.problem).toContain('ACCESS_CLIENT_ID_MISSING and ACCESS_CLIENT_SECRET_MISSING')
    const stored = JSON.stringify(await env.FLEET.get(HEALTH_KEY, 'json'))
    for (const value of Object.values(PAIRS)) expect(stored).not.toContain(value)
  })
})

describe('a token Cloudflare Access refuses', () => {
  // Access answers with a redirect to its login page, whose 200 must not pass for the backend's.
  const login = () => new Response(null, { status: 302, headers: { location: 'https://team.cloudflareaccess.com/cdn-cgi/access/login' } })
  let redirects: (string | undefined)[] = []
  beforeEach(() => {
    redirects = []
    vi.spyOn(globalThis, 'fetch').mockImplementation(async (input, init) => {
      redirects.push(init?.redirect)
      return login()
    })
  })
  afterEach(() => {
    vi.restoreAllMocks()
  })

  it('makes the probe call the backend unhealthy, and a chat request 502 upstream_auth_failed, never following the redirect', async () => {
    await writeFleet([backendRecord(0)])
    const snapshot = await runHealthProbe(fleetEnv(PAIRS))
    expect(snapshot.backends['gpu-a']).toMatchObject({ healthy: false, problem: 'health status 302' })
    await env.FLEET.delete(HEALTH_KEY)
    const answer = await chat(fleetEnv(PAIRS))
    expect(answer.status).toBe(502)
    expect((JSON.parse(answer.body) as { error: { code: string } }).error.code).toBe('upstream_auth_failed')
    expect(redirects.length).toBeGreaterThanOrEqual(2)
    expect(redirects.every((mode) => mode === 'manual')).toBe(true)
  })
})
