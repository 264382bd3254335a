// GET /: the printed address opened in a browser, or asked by a program, points to the pages, the
// API and the docs, with no key; every other unknown path and method stays a 404.
import { createExecutionContext, waitOnExecutionContext } from 'cloudflare:test'
import { env, exports } from 'cloudflare:workers'
import { describe, expect, it } from 'vitest'
import app from '../../src/index.ts'
import { LOCAL_KEY_HINT } from '../../src/middleware/auth.ts'
import { acceptsHtml } from '../../src/routes/home.ts'
import { MODEL } from '../support/worker.ts'

const raw = (path: string, init?: RequestInit) => exports.default.fetch(`http://gateway.test${path}`, init)
const BROWSER_ACCEPT = 'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8'

async function fetchAt(url: string, overrides: Record<string, unknown>, init: RequestInit = {}): Promise<Response> {
  const ctx = createExecutionContext()
  const response = await app.fetch(new Request(url, init), { ...env, ...overrides }, ctx)
  await waitOnExecutionContext(ctx)
  return response
}

interface HomeJson {
  object: string
  model: string
  pages: Record<string, string>
  api: { base: string; auth: string; routes: string[] }
  docs: string[]
  local_key?: string
}

describe('GET /', () => {
  it('gives a browser a small page, without a key, linking the playground, the dashboard, /health and the docs', async () => {
    const response = await raw('/', { headers: { accept: BROWSER_ACCEPT } })
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toMatch(/^text\/html/)
    expect(response.headers.get('vary')).toBe('Accept')
    expect(response.headers.get('content-security-policy')).toContain("default-src 'none'")
    const html = await response.text()
    for (const path of ['/playground', '/dashboard', '/health']) expect(html).toContain(`<a href="${path}">${path}</a>`)
    expect(html).toContain('POST /v1/chat/completions')
    expect(html).toContain('docs/api.md')
    expect(html).toContain(MODEL)
    expect(html).not.toContain('<script')
    expect(html).not.toContain('.dev.vars')
  })

  it('gives a program (curl, an SDK) the same as a JSON object', async () => {
    for (const accept of [undefined, '*/*', 'application/json', 'text/html;q=0, application/json']) {
      const response = await raw('/', accept === undefined ? {} : { headers: { accept } })
      expect(response.status, accept).toBe(200)
      expect(response.headers.get('content-type')).toMatch(/^application\/json/)
      const body = (await response.json()) as HomeJson
      expect(body).toMatchObject({
        object: 'gateway',
        model: MODEL,
        pages: { playground: '/playground', dashboard: '/dashboard', health: '/health' },
        api: { base: '/v1', auth: 'Authorization: Bearer sk-...' },
        docs: ['README.md', 'docs/api.md'],
      })
      expect(body.api.routes).toContain('POST /v1/chat/completions')
      expect(body.local_key).toBeUndefined()
    }
  })

  it('says where the local key is in local development only', async () => {
    const local = { PUBLIC_ORIGINS: 'http://127.0.0.1:8787,http://localhost:8787' }
    const json = (await (await fetchAt('http://127.0.0.1:8787/', local)).json()) as HomeJson
    expect(json.local_key).toBe(LOCAL_KEY_HINT)
    const html = await (await fetchAt('http://127.0.0.1:8787/', local, { headers: { accept: BROWSER_ACCEPT } })).text()
    expect(html).toContain('DEV_API_KEY in .dev.vars')
    const deployed = (await (await fetchAt('https://gateway.example.com/', local)).json()) as HomeJson
    expect(deployed.local_key).toBeUndefined()
  })

  it('keeps every other path, and other methods on /, a JSON 404', async () => {
    for (const [method, path] of [
      ['GET', '/index.html'],
      ['GET', '/nothing-here'],
      ['POST', '/'],
      ['DELETE', '/'],
    ] as const) {
      const response = await raw(path, { method, headers: { accept: BROWSER_ACCEPT } })
      expect(response.status, `${method} ${path}`).toBe(404)
      expect(((await response.json()) as { error: { code: string } }).error.code).toBe('unknown_route')
    }
  })

  it('reads Accept as a browser sends it', () => {
    expect(acceptsHtml(BROWSER_ACCEPT)).toBe(true)
    expect(acceptsHtml('TEXT/HTML; q=0.5')).toBe(true)
    expect(acceptsHtml('text/html;q=0')).toBe(false)
    expect(acceptsHtml('*/*')).toBe(false)
    expect(acceptsHtml(undefined)).toBe(false)
  })
})
