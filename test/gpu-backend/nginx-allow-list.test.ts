// The nginx example (gpu-backend/tunnel/nginx.conf) run for real in front of a vLLM emulator:
// every vLLM v0.11.0 route off the allow-list is refused by nginx and never reaches the backend,
// every allowed one works through it, streams included, event by event.
// Outside CI a machine without nginx skips this, saying why; in CI (CI=true) it fails instead.
import { existsSync, readFileSync } from 'node:fs'
import { request } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawnEmulator, type RunningEmulator } from '../../scripts/stack.ts'
import { allowList, configAllowList, NGINX, NGINX_TEMPLATE, startNginx, vllmRoutes, type Route, type RunningNginx } from './nginx.ts'

const KEY = 'bk-nginx-allow-list-0123456789abcdef'
const MODEL = 'deepseek-r1-distill-qwen-1.5b'
const AUTH = { authorization: `Bearer ${KEY}` }
const available = existsSync(NGINX)
const inCi = process.env.CI === 'true'
const SKIPPED = available ? '' : ` (skipped: ${NGINX} is not installed; apt-get install nginx-light)`
const key = (route: Route) => `${route.method} ${route.path}`

/** One request with a raw path (fetch would normalise /x/../y), answered in full. */
function raw(
  base: string,
  method: string,
  path: string,
  body?: string,
): Promise<{ status: number; headers: Record<string, string>; body: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...AUTH, ...(body === undefined ? {} : { 'content-type': 'application/json' }) }
    // A connection of its own: nginx closes one after refusing a request whose body it did not read.
    const req = request(`${base}${path}`, { method, headers, path, agent: false }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (text += chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers as Record<string, string>, body: text }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

async function recordedPaths(emulator: RunningEmulator): Promise<string[]> {
  const log = (await (await fetch(`${emulator.url}/emulator/requests`)).json()) as { method: string; path: string }[]
  return log.map((entry) => `${entry.method} ${entry.path}`)
}

async function resetEmulator(emulator: RunningEmulator): Promise<void> {
  expect((await fetch(`${emulator.url}/emulator/reset`, { method: 'POST' })).status).toBe(200)
}

/** The access-log lines of requests nginx passed to vLLM (upstream= names an address). */
async function upstreamLines(nginx: RunningNginx): Promise<string[]> {
  return (await nginx.accessLog()).filter((line) => !line.includes(' upstream=- '))
}

describe('the allow-list of gpu-backend/tunnel/nginx.conf', () => {
  it('is allow-list.json exactly: one location = per route, with its method', () => {
    const configured = configAllowList(readFileSync(NGINX_TEMPLATE, 'utf8'))
    expect(configured.map(key).sort()).toEqual(allowList().map(key).sort())
  })
})

describe.skipIf(!available && !inCi)(`nginx in front of the vLLM emulator${SKIPPED}`, () => {
  let emulator: RunningEmulator
  let nginx: RunningNginx
  const allowed = new Set(allowList().map(key))
  const refused = vllmRoutes().routes.filter((route) => !allowed.has(key(route)))

  beforeAll(async () => {
    if (!available) expect.fail(`${NGINX} is missing in CI; .ci/run installs the Debian package nginx-light`)
    emulator = await spawnEmulator(['--served-model-name', MODEL, '--reasoning-parser', 'deepseek_r1'], 0, { VLLM_API_KEY: KEY })
    nginx = await startNginx(new URL(emulator.url).host)
  }, 30_000)

  afterAll(async () => {
    await nginx?.stop()
    await emulator?.stop()
  })

  it('passes nginx -t', async () => {
    const result = await nginx.test()
    expect(result.output).toContain('test is successful')
    expect(result.code).toBe(0)
  })

  it('refuses with 404 every vLLM v0.11.0 route off the allow-list, key or not, and never asks vLLM', async () => {
    expect(refused.length).toBeGreaterThan(20)
    expect(refused.map(key)).toEqual(
      expect.arrayContaining(['POST /invocations', 'POST /scale_elastic_ep', 'POST /detokenize', 'GET /load']),
    )
    await resetEmulator(emulator)
    for (const route of refused) {
      const answer = await raw(nginx.url, route.method, route.path, route.method === 'POST' ? '{}' : undefined)
      expect(answer.status, key(route)).toBe(404)
      expect(JSON.parse(answer.body), key(route)).toEqual({ detail: 'Not Found' })
    }
    expect(await recordedPaths(emulator)).toEqual([])
    expect(await upstreamLines(nginx)).toEqual([])
  })

  it('refuses other spellings of refused paths: dot segments, doubled slashes, percent-escapes', async () => {
    await resetEmulator(emulator)
    const before = (await upstreamLines(nginx)).length
    for (const path of [
      '/v1/chat/completions/../../invocations',
      '//invocations',
      '/%69nvocations',
      '/v1/chat/completions/',
      '/v1/chat/completions%2F..%2F..%2Finvocations',
    ]) {
      expect((await raw(nginx.url, 'POST', path, '{}')).status, path).toBe(404)
    }
    expect(await recordedPaths(emulator)).toEqual([])
    expect((await upstreamLines(nginx)).length).toBe(before)
  })

  it('answers 405 with Allow to another method on an allowed path, without asking vLLM', async () => {
    await resetEmulator(emulator)
    const before = (await upstreamLines(nginx)).length
    for (const route of allowList()) {
      for (const method of ['GET', 'POST', 'PUT', 'DELETE', 'HEAD'].filter((m) => m !== route.method)) {
        const answer = await raw(nginx.url, method, route.path, method === 'GET' || method === 'HEAD' ? undefined : '{}')
        expect(answer.status, `${method} ${route.path}`).toBe(405)
        expect(answer.headers.allow, `${method} ${route.path}`).toBe(route.method)
      }
    }
    expect(await recordedPaths(emulator)).toEqual([])
    expect((await upstreamLines(nginx)).length).toBe(before)
  })

  it('lets every allowed route through, the client key passed on to vLLM as its lock', async () => {
    expect((await fetch(`${nginx.url}/health`)).status).toBe(200)
    const metrics = await fetch(`${nginx.url}/metrics`, { headers: AUTH })
    expect(metrics.status).toBe(200)
    expect(await metrics.text()).toContain('vllm:num_requests_running')
    const models = await fetch(`${nginx.url}/v1/models`, { headers: AUTH })
    expect(models.status).toBe(200)
    expect(((await models.json()) as { data: { id: string }[] }).data.map((model) => model.id)).toEqual([MODEL])
    expect((await fetch(`${nginx.url}/v1/models`)).status).toBe(401)
    expect((await fetch(`${nginx.url}/v1/models`, { headers: { authorization: 'Bearer bk-wrong-key-0123456789' } })).status).toBe(401)
    const chat = await fetch(`${nginx.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { ...AUTH, 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, max_tokens: 8, messages: [{ role: 'user', content: 'Hi' }] }),
    })
    expect(chat.status).toBe(200)
    expect(((await chat.json()) as { object: string }).object).toBe('chat.completion')
    const tokens = await fetch(`${nginx.url}/tokenize`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }] }),
    })
    expect(tokens.status).toBe(200)
    expect(((await tokens.json()) as { count: number }).count).toBeGreaterThan(0)
    const seen = await upstreamLines(nginx)
    for (const route of allowList())
      expect(
        seen.some((line) => line.includes(`"${key(route)}" `)),
        key(route),
      ).toBe(true)
  })

  it('passes vLLM exactly the allowed path, whatever spelling the client used', async () => {
    await resetEmulator(emulator)
    const answer = await raw(nginx.url, 'GET', '/invocations/..//v1/./models?x=1')
    expect(answer.status).toBe(200)
    expect(await recordedPaths(emulator)).toEqual(['GET /v1/models?x=1'])
  })

  it('streams a chat completion event by event, unbuffered and uncompressed', { timeout: 20_000 }, async () => {
    const started = performance.now()
    const response = await fetch(`${nginx.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { ...AUTH, 'content-type': 'application/json', 'accept-encoding': 'gzip, br' },
      body: JSON.stringify({
        model: MODEL,
        stream: true,
        messages: [{ role: 'user', content: '[emulator ttft_ms=5 itl_ms=50 reasoning_tokens=10 content_tokens=4] What is 7 * 6?' }],
      }),
    })
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toContain('text/event-stream')
    expect(response.headers.get('content-encoding')).toBeNull()
    const arrivals: number[] = []
    const decoder = new TextDecoder()
    let text = ''
    for await (const chunk of response.body ?? []) {
      const part = decoder.decode(chunk, { stream: true })
      text += part
      for (let i = 0; i < part.split('\n\n').length - 1; i++) arrivals.push(performance.now() - started)
    }
    expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true)
    const events = text.split('\n\n').filter((event) => event.startsWith('data: '))
    expect(events.length).toBeGreaterThanOrEqual(14)
    // 14 tokens 50 ms apart: buffered, they would all arrive at once after the last one.
    const first = arrivals[0] ?? 0
    const last = arrivals.at(-1) ?? 0
    expect(last - first).toBeGreaterThan(13 * 50 * 0.8)
    expect(first).toBeLessThan(last - 400)
  })
})
