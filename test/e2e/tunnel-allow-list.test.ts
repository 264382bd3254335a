// The Worker's real traffic through the tunnel's rules: the built bundle served by workerd, a
// stand-in for cloudflared applying gpu-backend/tunnel/config.yml, and the vLLM emulator, which
// exposes v0.11.0's unguarded routes (/invocations, /tokenize, /load, ...) as vLLM does. The
// Worker's chat requests and its cron probe reach the emulator on allow-listed paths only, and
// the unguarded routes that answer anyone on the emulator's own port are refused by the rules.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { buildPrivateWorker, serveWorker, spawnEmulator, type RunningEmulator, type ServedWorker } from '../../scripts/stack.ts'
import { startTunnelStandIn, type TunnelStandIn } from '../gpu-backend/tunnel-stand-in.ts'
import { allowList, tunnelConfig } from '../gpu-backend/tunnel-support.ts'

const MODEL = 'deepseek-r1-distill-qwen-1.5b'
const BACKEND_KEY = 'tunnel-e2e-backend-key'
const CLIENT_KEY = `sk-${'t'.repeat(43)}`
const HOSTNAME = 'vllm-0.gpu-host.example.com'

let emulator: RunningEmulator
let tunnel: TunnelStandIn
let worker: ServedWorker

const allowed = allowList().map((route) => `${route.method} ${route.path}`)

beforeAll(async () => {
  const args = ['--served-model-name', MODEL, '--reasoning-parser', 'deepseek_r1', '--ttft-ms', '5', '--itl-ms', '1']
  const [script, started] = await Promise.all([buildPrivateWorker(), spawnEmulator(args, 0, { VLLM_API_KEY: BACKEND_KEY })])
  emulator = started
  const config = tunnelConfig()
  // The rules of HOSTNAME reach vllm-0: the emulator stands in for it.
  const service = config.ingress.find((rule) => rule.hostname === HOSTNAME)?.service ?? ''
  expect(service).toBe('http://vllm-0:8000')
  tunnel = await startTunnelStandIn(config.ingress, HOSTNAME, { [service]: emulator.url })
  worker = await serveWorker(
    script,
    { BACKEND_URLS: tunnel.url, BACKEND_API_KEY: BACKEND_KEY },
    { keys: [{ secret: CLIENT_KEY, fields: { scopes: ['chat'] } }], triggerHandlers: true },
  )
}, 120_000)

afterAll(async () => {
  await worker?.dispose()
  await tunnel?.close()
  await emulator?.stop()
})

function chat(stream: boolean): Promise<Response> {
  return fetch(`${worker.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, stream, max_tokens: 8, messages: [{ role: 'user', content: 'Say hi.' }] }),
  })
}

async function emulatorLog(): Promise<string[]> {
  const entries = (await (await fetch(`${emulator.url}/emulator/requests`)).json()) as { method: string; path: string }[]
  return entries.map((entry) => `${entry.method} ${entry.path}`)
}

describe("the Worker's traffic through the tunnel's rules", () => {
  it('streams a chat completion and answers one whole, through the allow-listed path', async () => {
    const streamed = await chat(true)
    expect(streamed.status).toBe(200)
    expect(await streamed.text()).toMatch(/data: \[DONE\]\n\n$/)
    const whole = await chat(false)
    expect(whole.status).toBe(200)
    expect(((await whole.json()) as { object: string }).object).toBe('chat.completion')
  })

  it("runs the cron probe's /health and /metrics through the tunnel", async () => {
    const run = await fetch(`${worker.url}/cdn-cgi/local/scheduled?cron=*+*+*+*+*`)
    expect(await run.text()).toBe('ok')
    await vi.waitFor(() => {
      const paths = tunnel.seen.map((request) => `${request.method} ${request.path}`)
      expect(paths).toEqual(expect.arrayContaining(['GET /health', 'GET /metrics']))
    })
  })

  it('sent the backend nothing but allow-listed routes, all let through, and the emulator saw only those', async () => {
    const sent = tunnel.seen.map((request) => `${request.method} ${request.path}`)
    expect(new Set(sent)).toEqual(new Set(['POST /v1/chat/completions', 'GET /health', 'GET /metrics']))
    for (const route of sent) expect(allowed).toContain(route)
    expect(tunnel.seen.filter((request) => request.service !== 'http://vllm-0:8000')).toEqual([])
    // The emulator logs /v1 requests and /invocations (records.ts); /health and /metrics it does not.
    expect(new Set(await emulatorLog())).toEqual(new Set(['POST /v1/chat/completions']))
  })
})

describe("vLLM's unguarded routes, on the emulator's port and through the tunnel", () => {
  const chatBody = JSON.stringify({ model: MODEL, max_tokens: 4, messages: [{ role: 'user', content: 'Hi' }] })
  const probes: [string, string, string | undefined][] = [
    ['POST', '/invocations', chatBody],
    ['POST', '/tokenize', JSON.stringify({ prompt: 'hello' })],
    ['POST', '/detokenize', JSON.stringify({ tokens: [1] })],
    ['GET', '/load', undefined],
    ['GET', '/version', undefined],
    ['GET', '/ping', undefined],
  ]

  it('answer anyone without a key on the emulator, as on vLLM v0.11.0', async () => {
    for (const [method, path, body] of probes) {
      const response = await fetch(`${emulator.url}${path}`, { method, body, headers: { 'content-type': 'application/json' } })
      expect(response.status, `${method} ${path}`).toBe(200)
      await response.body?.cancel()
    }
  })

  it('are refused with 404 by the tunnel and never reach the emulator', async () => {
    const before = await emulatorLog()
    const seenBefore = tunnel.seen.length
    // All but /tokenize, which /v1/messages/count_tokens asks (gpu-backend/tunnel/allow-list.json).
    for (const [method, path, body] of [
      ...probes.filter(([, path]) => path !== '/tokenize'),
      ['POST', '/scale_elastic_ep', '{}'] as const,
      ['GET', '/v1/chat/completions/..%2F..%2Finvocations', undefined] as const,
    ]) {
      const response = await fetch(`${tunnel.url}${path}`, { method, body, headers: { 'content-type': 'application/json' } })
      expect(response.status, `${method} ${path}`).toBe(404)
      await response.body?.cancel()
    }
    expect(tunnel.seen.slice(seenBefore).every((request) => request.service === 'http_status:404')).toBe(true)
    // The emulator logged the direct /invocations of the test before, and nothing new since.
    expect(await emulatorLog()).toEqual(before)
  })
})
